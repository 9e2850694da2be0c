"""[door] and the profile's door lines: the final validation says what a mode needs and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.load import load_config
from edge.errors import ConfigError

PROFILE = """[board]
id = "x"
name = "X"

[[uarts]]
name = "rs485"
path = "/dev/ttyAMA0"
max_baud = 57600

[gpio]
chip = "/dev/gpiochip0"
door_relay = 17
{extra}
"""


def problems(tmp_path: Path, door: str, extra: str = "") -> list[str]:
    (tmp_path / "p.toml").write_text(PROFILE.format(extra=extra))
    cfg = tmp_path / "edge.toml"
    cfg.write_text(
        f'version = 1\n[device]\nsite = "s"\nprofile = "p.toml"\n[fingerprint]\nenabled = false\n'
        f"[camera]\nenabled = false\n[door]\n{door}\n"
    )
    try:
        load_config(cfg)
    except ConfigError as exc:
        return [p.render() for p in exc.problems]
    return []


def test_relay_mode_is_the_default_and_needs_nothing_new(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == []


def test_osdp_needs_a_port_or_a_profile_uart(tmp_path: Path) -> None:
    found = problems(tmp_path, 'mode = "osdp"')
    assert len(found) == 1
    assert "door.port" in found[0]
    assert "rs485" in found[0]  # names the UARTs the profile offers
    assert ":9:" in found[0] or "edge.toml:" in found[0]
    assert problems(tmp_path, 'mode = "osdp"\nport = "/dev/ttyUSB0"') == []
    assert problems(tmp_path, 'mode = "osdp"\nuart = "rs485"') == []


def test_a_misspelt_uart_gets_a_suggestion_and_a_slow_uart_is_refused(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, 'mode = "osdp"\nuart = "rs458"')
    assert "did you mean 'rs485'" in found
    (found,) = problems(tmp_path, 'mode = "osdp"\nuart = "rs485"\nbaud = 115200')
    assert "door.baud" in found
    assert "max 57600" in found


def test_osdp_speeds_and_addresses_are_the_standards(tmp_path: Path) -> None:
    assert any("door.baud" in p for p in problems(tmp_path, 'mode = "osdp"\nport = "x"\nbaud = 14400'))
    assert any("door.address" in p for p in problems(tmp_path, 'mode = "osdp"\nport = "x"\naddress = 127'))
    assert any("door.mode" in p for p in problems(tmp_path, 'mode = "osdp-reader"'))


def test_wiegand_out_needs_both_output_lines_on_real_gpio(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, 'mode = "wiegand-out"', "wiegand_out_d0 = 20")
    assert "gpio.wiegand_out_d1" in found
    assert problems(tmp_path, 'mode = "wiegand-out"', "wiegand_out_d0 = 20\nwiegand_out_d1 = 21") == []


@pytest.mark.parametrize("line", ["wiegand_out_d0 = 17", "tamper = 17"])
def test_the_new_lines_may_not_share_a_gpio_with_another_device(tmp_path: Path, line: str) -> None:
    found = problems(tmp_path, "", line)
    assert any("door_relay has line 17" in p for p in found)


def test_tamper_polarity_takes_only_high_or_low(tmp_path: Path) -> None:
    found = problems(tmp_path, "", 'tamper = 4\ntamper_open_level = "open"')
    assert any("tamper_open_level" in p for p in found)
