"""The device plan: every device the config enables, resolved once against the profile by the same
resolvers final validation runs, and what the wiring (``edge.agent.assembly``) reads.

Tried against the tree before: the fingerprint UART was looked up in final validation and again in
the wiring (``subsystems.fingerprint_url``, which ignored the baud-rate check), and the OSDP bus in
final validation and again in ``door.modes.osdp_port`` (which ignored the misspelling and the
speed), so the two could disagree about a config; and nothing but final.py may read the UART list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from edge.config.final import DevicePlan, FingerprintPlan, SerialLink, device_plan
from edge.config.load import load_config, load_profile, shipped_profiles
from edge.config.schema import AgentConfig, Profile
from edge.door.modes import osdp_port
from edge.errors import ConfigError
from edge.modality import Modality

ROOT = Path(__file__).resolve().parents[2]

PROFILE = """[board]
id = "x"
name = "X"

[[uarts]]
name = "serial0"
path = "/dev/ttyAMA0"
max_baud = 57600

[[uarts]]
name = "rs485"
path = "/dev/ttyAMA2"
max_baud = 57600

[fingerprint]
family = "r503"
uart = "serial0"
baud = {baud}

[gpio]
chip = "sim"
simulated = true
"""


def load(tmp_path: Path, body: str, *, baud: int = 57600) -> tuple[AgentConfig, Profile]:
    (tmp_path / "p.toml").write_text(PROFILE.format(baud=baud))
    path = tmp_path / "edge.toml"
    path.write_text(f'version = 1\n[device]\nsite = "s"\nprofile = "p.toml"\n[camera]\nenabled = false\n{body}')
    return load_config(path)


def planned(tmp_path: Path, body: str) -> DevicePlan:
    return device_plan(*load(tmp_path, body))


def finger(plan: DevicePlan) -> FingerprintPlan:
    assert plan.fingerprint is not None
    return plan.fingerprint


def test_every_shipped_profile_with_its_defaults_has_a_plan(tmp_path: Path) -> None:
    for name in shipped_profiles():
        config_path = tmp_path / f"{name}.toml"
        config_path.write_text(f'version = 1\n[device]\nsite = "s"\nprofile = "{name}"\n')
        config, profile = load_config(config_path)
        plan = device_plan(config, profile)
        offer = profile.fingerprint
        if offer is None:
            assert plan.fingerprint is None, name
            continue
        assert plan.fingerprint is not None, name
        uart = next(u for u in profile.uarts if u.name == offer.uart)
        assert plan.fingerprint.link == SerialLink(uart.path, offer.baud), name
        assert plan.fingerprint.led is (offer.family == "r503"), name


def test_the_fingerprint_link_is_the_port_override_else_the_named_uart(tmp_path: Path) -> None:
    assert finger(planned(tmp_path, "")).link == SerialLink("/dev/ttyAMA0", 57600)
    assert finger(planned(tmp_path, '[fingerprint]\nuart = "rs485"\n')).link.url == "/dev/ttyAMA2"
    override = planned(tmp_path, '[fingerprint]\nport = "/tmp/fpsim/tty"\n')
    assert finger(override).link == SerialLink("/tmp/fpsim/tty", 57600)  # a simulator pty needs no UART
    assert planned(tmp_path, "[fingerprint]\nenabled = false\n").fingerprint is None


def test_final_validation_and_the_plan_refuse_the_same_uart_for_the_same_reason(tmp_path: Path) -> None:
    """A UART too slow for the sensor: load_config says so with the line; the plan of the same
    config (had it been built by hand) raises the same problem instead of opening the port."""
    with pytest.raises(ConfigError) as loaded:
        load(tmp_path, "", baud=115200)
    (problem,) = loaded.value.problems
    assert (problem.key_path, problem.expected) == ("fingerprint.uart", "a UART that supports 115200 baud")
    config = AgentConfig.model_validate({"device": {"site": "s", "profile": "p.toml"}, "camera": {"enabled": False}})
    with pytest.raises(ConfigError) as planned:
        device_plan(config, load_profile(tmp_path / "p.toml"))
    (same,) = planned.value.problems
    assert (same.key_path, same.expected, same.found) == (problem.key_path, problem.expected, problem.found)


def test_the_osdp_bus_is_resolved_by_the_same_resolver_for_the_plan_and_the_door(tmp_path: Path) -> None:
    config, profile = load(tmp_path, '[fingerprint]\nenabled = false\n[door]\nmode = "osdp"\nuart = "rs485"\n')
    bus = device_plan(config, profile).door.osdp
    assert bus == SerialLink("/dev/ttyAMA2", 9600)
    assert osdp_port(config.door, profile) == bus.url
    # a door section that final validation would refuse: the door's own lookup refuses it the same way
    bad = config.door.model_copy(update={"uart": "rs458"})
    with pytest.raises(ConfigError) as refused:
        osdp_port(bad, profile)
    (problem,) = refused.value.problems
    assert (problem.key_path, problem.suggestion) == ("door.uart", "rs485")
    assert planned(tmp_path, "[fingerprint]\nenabled = false\n").door.osdp is None


def test_the_plan_carries_the_credential_kinds_the_gate_accepts(tmp_path: Path) -> None:
    credentials = planned(tmp_path, '[credentials]\ncard = "sim"\npin = false\nqr = true\n').credentials
    assert (credentials.reader, credentials.kinds) == ("sim", frozenset({Modality.card, Modality.qr}))


def test_only_final_validation_reads_the_profiles_uarts() -> None:
    """Every other module takes a resolved ``SerialLink`` from the plan (or ``osdp_link``)."""
    readers = []
    for package in ("edge", "provisioning"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            if any(isinstance(node, ast.Attribute) and node.attr == "uarts" for node in ast.walk(tree)):
                readers.append(str(path.relative_to(ROOT)))
    assert readers == ["edge/config/final.py"]
