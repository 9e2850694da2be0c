"""Config and profile validation: every problem at once, with lines, for installers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.main import main as edge_main
from edge.config import load_config, load_profile, shipped_profiles
from edge.config.final import validate_profile
from edge.config.migrate import migrate
from edge.config.redact import REDACTED, redacted
from edge.config.tomlpos import key_lines
from edge.errors import ConfigError

EXPECTED_PROFILES = {"sim", "rpi4-r307-picam2", "rpi5-r503-usbcam", "jetson-orin-nano-r503-csi"}


def test_every_shipped_profile_validates() -> None:
    profiles = shipped_profiles()
    assert set(profiles) >= EXPECTED_PROFILES
    for name, path in profiles.items():
        profile = load_profile(path)
        assert validate_profile(profile) == [], name


@pytest.mark.parametrize("name", sorted(EXPECTED_PROFILES))
def test_edge_validate_profile_exits_zero(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert edge_main(["validate", "--profile", name]) == 0
    assert "valid profile" in capsys.readouterr().out


GOOD = """\
version = 1

[device]
site = "site-001"
profile = "rpi4-r307-picam2"
state_dir = "/var/lib/gate-edge"

[mqtt]
url = "mqtts://broker.example:8883"
username = "gate-1"
password = "hunter2-very-secret"
"""

# Three problems the installer must all see at once: a misspelt key (line 7), a wrong type
# (line 10) and a UART the profile does not have (line 13).
BAD = """\
version = 1

[device]
site = "site-001"
profile = "rpi4-r307-picam2"

[polcy]
mode = "face_or_finger"

[face]
min_face_px = "big"

[fingerprint]
uart = "uart5"
"""


def test_good_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    config, profile = load_config(path)
    assert config.device.site == "site-001"
    assert profile.fingerprint is not None
    assert profile.fingerprint.family == "r307"


def test_bad_config_reports_all_three_problems_with_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    rendered = [p.render() for p in info.value.problems]
    assert len(rendered) == 3, rendered
    by_key = {p.key_path: p for p in info.value.problems}
    assert by_key["polcy"].line == 7
    assert by_key["polcy"].suggestion == "policy"
    assert by_key["face.min_face_px"].line == 11
    assert "'big'" in by_key["face.min_face_px"].found
    assert by_key["fingerprint.uart"].line == 14
    assert "primary" in by_key["fingerprint.uart"].expected

    assert edge_main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:7: polcy: unknown key (did you mean 'policy'?)" in err
    assert f"{path}:11: face.min_face_px" in err
    assert f"{path}:14: fingerprint.uart" in err


def test_valid_config_exits_zero_and_never_prints_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD)
    assert edge_main(["validate", str(path), "--show"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert REDACTED in out


def test_secret_in_a_wrong_place_is_not_echoed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(GOOD.replace('password = "hunter2-very-secret"', "password = 12345678901"))
    assert edge_main(["validate", str(path)]) == 1
    assert "12345678901" not in capsys.readouterr().err


def test_corrupt_toml_is_a_clear_error_with_a_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('version = 1\n[device\nsite = "x"\n')
    assert edge_main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "not valid TOML" in err
    assert f"{path}:2" in err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert edge_main(["validate", str(tmp_path / "nope.toml")]) == 1
    assert "file not found" in capsys.readouterr().err


def test_unknown_profile_suggests_a_shipped_one(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('[device]\nsite = "s"\nprofile = "rpi4-r307-picam"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.suggestion == "rpi4-r307-picam2"
    assert problem.line == 3


def test_gpio_line_claimed_twice_is_refused(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[board]\nid = "x"\nname = "X"\n[gpio]\ndoor_relay = 17\nrequest_to_exit = 17\n')
    problems = validate_profile(load_profile(profile))
    assert len(problems) == 1
    assert "door_relay has line 17" in problems[0].expected


def test_card_readers_need_their_wiring_wiegand_lines_or_a_serial_port(tmp_path: Path) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text('[board]\nid = "x"\nname = "X"\n[gpio]\ndoor_relay = 17\n')
    config = tmp_path / "edge.toml"
    base = f'[device]\nsite = "s"\nprofile = "{profile}"\n[fingerprint]\nenabled = false\n[camera]\nenabled = false\n'
    config.write_text(base + '[credentials]\ncard = "wiegand"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    (problem,) = info.value.problems
    assert problem.key_path == "credentials.card"
    assert problem.line == 9
    assert "gpio.wiegand_d0 and gpio.wiegand_d1 not set" in problem.expected
    # the shipped Pi profiles offer the lines; a format the codec does not know is refused
    config.write_text(base.replace(str(profile), "rpi5-r503-usbcam") + '[credentials]\ncard = "wiegand"\n')
    loaded, pi = load_config(config)
    assert (loaded.credentials.wiegand_formats, pi.gpio.wiegand_d0, pi.gpio.wiegand_d1) == (["H10301", "W34"], 5, 6)
    config.write_text(base + '[credentials]\ncard = "serial"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    (problem,) = info.value.problems
    assert (problem.key_path, problem.line) == ("credentials.port", 9)
    pi_base = base.replace(str(profile), "rpi5-r503-usbcam")
    config.write_text(pi_base + '[credentials]\ncard = "wiegand"\nwiegand_formats = ["H10305"]\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert [p.key_path for p in info.value.problems] == ["credentials.wiegand_formats[0]"]


def test_old_config_is_migrated_purely() -> None:
    old = {"device": {"site": "s"}, "broker": {"url": "mqtt://h:1883"}}
    new, passed = migrate(old)
    assert passed == [0]
    assert new["mqtt"] == {"url": "mqtt://h:1883"}
    assert "broker" not in new
    assert "broker" in old  # the input is untouched


def test_newer_config_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text('version = 99\n[device]\nsite = "s"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "newer than this agent" in info.value.problems[0].expected


def test_key_lines_handles_arrays_of_tables_and_multiline_values() -> None:
    text = '[[uarts]]\nname = "a"\n[[uarts]]\nname = "b"\nmodes = [\n  1,\n  2,\n]\nx = """\nq = 1\n"""\ny = 2\n'
    lines = key_lines(text)
    assert lines[("uarts", 0, "name")] == 2
    assert lines[("uarts", 1, "name")] == 4
    assert lines[("uarts", 1, "y")] == 12
    assert ("uarts", 1, "q") not in lines


def test_redaction_covers_nested_secrets() -> None:
    out = redacted({"mqtt": {"password": "p", "url": "u"}, "keys": [{"private_key": "k"}]})
    assert out == {"mqtt": {"password": REDACTED, "url": "u"}, "keys": [{"private_key": REDACTED}]}
