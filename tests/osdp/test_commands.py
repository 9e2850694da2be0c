"""The panel's LED, buzzer and output commands as typed values, and the programs they set."""

from __future__ import annotations

import pytest

from edge.osdp.commands import (
    BuzzerCommand,
    KeysetCommand,
    LedCommand,
    LedPattern,
    LedProgram,
    OsdpCommandError,
    OtherCommand,
    OutputCommand,
    OutputProgram,
    parse_command,
)


def led(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"command": 2, "reader": 0, "led_number": 0, "control_code": 1, "on_color": 2}
    base |= {"off_color": 0, "on_count": 5, "off_count": 5, "temporary": False}
    return base | kw


def test_a_permanent_led_command_blinks_green_until_changed() -> None:
    command = parse_command(led())
    assert command == LedCommand(0, 0, LedPattern("green", "none", 500, 500))
    program = LedProgram()
    assert program.colour(0.0) is None  # the panel has not spoken: the terminal's own indication
    assert isinstance(command, LedCommand)
    program.apply(command, 10.0)
    assert [program.colour(10.0 + t) for t in (0.0, 0.4, 0.5, 0.9, 1.0)] == ["green", "green", "none", "none", "green"]


def test_a_temporary_pattern_wins_until_its_timer_then_the_permanent_one_returns() -> None:
    program = LedProgram()
    program.apply(parse_command(led(off_count=0)), 0.0)  # type: ignore[arg-type]
    temp = parse_command(led(temporary=True, control_code=2, on_color=1, off_count=0, timer_count=20))
    assert isinstance(temp, LedCommand)
    assert temp.temporary
    assert temp.timer_ms == 2000
    program.apply(temp, 5.0)
    assert program.colour(6.9) == "red"
    assert program.colour(7.0) == "green"


def test_cancelling_the_temporary_pattern_shows_the_permanent_one_at_once() -> None:
    program = LedProgram()
    program.apply(parse_command(led(off_count=0)), 0.0)  # type: ignore[arg-type]
    program.apply(parse_command(led(temporary=True, control_code=2, on_color=1, timer_count=50)), 1.0)  # type: ignore[arg-type]
    cancel = parse_command(led(temporary=True, control_code=1, timer_count=0))
    assert isinstance(cancel, LedCommand)
    assert cancel.cancel_temporary
    assert cancel.pattern is None
    program.apply(cancel, 2.0)
    assert program.colour(2.0) == "green"


@pytest.mark.parametrize(
    ("codes", "at", "expected"),
    [
        ([(2, 0)], 1.0, True),  # permanent on
        ([(2, 0), (1, 0)], 1.0, False),  # then permanent off
        ([(5, 30)], 2.9, True),  # pulse on for 3 s
        ([(5, 30)], 3.0, False),  # and back to the permanent off
        ([(2, 0), (6, 10)], 0.5, False),  # pulse off inside a permanent on
        ([(2, 0), (6, 10)], 1.0, True),
        ([(5, 30), (4, 0)], 1.0, True),  # permanent on after the timer: the timer runs on
        ([(5, 30), (3, 0)], 1.0, True),  # permanent off after the timer: still pulsing
        ([(5, 30), (3, 0)], 3.5, False),
        ([(5, 30), (1, 0)], 1.0, False),  # permanent off aborts the timer
    ],
)
def test_output_control_codes_follow_the_standard(codes: list[tuple[int, int]], at: float, expected: bool) -> None:
    program = OutputProgram()
    for code, timer in codes:
        command = parse_command({"command": 1, "output_no": 0, "control_code": code, "timer_count": timer})
        assert isinstance(command, OutputCommand)
        program.apply(command, 0.0)
    assert program.on(at) is expected


def test_a_permanent_code_of_2_as_some_panels_send_it_sets_the_pattern() -> None:
    command = parse_command(led(control_code=2))  # the osdp 1.6 panel sends SetPermanentState = 2
    assert isinstance(command, LedCommand)
    assert command.pattern is not None
    assert not command.temporary


def test_buzzer_keyset_and_unsupported_commands_are_typed() -> None:
    buzz = parse_command({"command": 3, "reader": 0, "control_code": 2, "on_count": 2, "off_count": 2, "rep_count": 3})
    assert buzz == BuzzerCommand(0, 2, 200, 200, 3)
    assert isinstance(buzz, BuzzerCommand)
    assert buzz.sounding
    key = parse_command({"command": 5, "type": 1, "data": bytes(range(16))})
    assert isinstance(key, KeysetCommand)
    assert repr(key) == "KeysetCommand()"  # the key is never printed
    assert parse_command({"command": 6, "address": 3, "baud_rate": 9600}) == OtherCommand("comset")


@pytest.mark.parametrize(
    "bad",
    [
        led(on_color=9),
        led(control_code=3),
        led(on_count=-1),
        led(reader="0"),
        {"command": 1, "output_no": 0, "control_code": 7, "timer_count": 0},
        {"command": 5, "type": 1, "data": b"short"},
        {"command": 99},
        {},
    ],
)
def test_values_outside_the_standard_are_the_products_error(bad: dict[str, object]) -> None:
    with pytest.raises(OsdpCommandError):
        parse_command(bad)
