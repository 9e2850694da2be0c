"""The door the settings ask for: ``[door] mode`` with the profile's lines (issue 15).

``open_configured_door`` returns a ``DoorOutput`` for every mode; in the reader modes the object is
also a ``PanelOutput`` (``report_card``). ``open_tamper`` gives the case switch of a door opened
here. The agent's wiring calls these two (``edge.agent`` still calls ``open_door`` for relay mode).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge.door.base import DoorController, open_door
from edge.door.osdp import OsdpReaderDoor
from edge.door.tamper import TamperSwitch
from edge.door.wiegand_out import WiegandOutDoor
from edge.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from edge.config.schema import DoorSection, GpioOffer, Profile
    from edge.osdp.carddata import PanelCredential
    from edge.osdp.pd import PdIdentity

ConfiguredDoor = DoorController | OsdpReaderDoor | WiegandOutDoor


def _reader_mode_lines(gpio: GpioOffer) -> DoorController:
    """The terminal's own lines in a reader mode: relay (the panel's output 0), LED, tamper; no
    request-to-exit or door contact (the panel's)."""
    if gpio.simulated or gpio.chip == "sim":
        from edge.door.sim import SimLines

        return DoorController(SimLines(contact_wired=False, rte_wired=False))
    from edge.door.gpiod_lines import GpiodLines

    return DoorController(
        GpiodLines(
            gpio.chip,
            relay=gpio.door_relay,
            status_led=gpio.status_led,
            relay_active_high=gpio.relay_active_high,
            tamper=gpio.tamper,
            tamper_open_high=gpio.tamper_open_level == "high",
        )
    )


def door_lines(door: DoorSection, profile: Profile, *, exit_pulse_s: float = 3.0) -> DoorController:
    """Only the terminal's own door lines for ``door.mode`` (selftest reads the case switch on them)."""
    if door.mode == "relay":
        return open_door(profile.gpio, exit_pulse_s=exit_pulse_s)
    return _reader_mode_lines(profile.gpio)


def osdp_port(door: DoorSection, profile: Profile) -> str:
    """The RS-485 port of mode ``osdp``, resolved as final validation resolves it (``edge.config.final``)."""
    from edge.config.final import osdp_link, resolved

    return resolved("settings", osdp_link(profile, door.port, door.uart, door.baud)).url


def open_configured_door(
    door: DoorSection,
    profile: Profile,
    *,
    scbk_path: Path,
    exit_pulse_s: float = 3.0,
    identity: PdIdentity | None = None,
    start: bool = True,
    audit: Callable[[str, dict[str, object]], object] | None = None,
    port: str | None = None,
) -> ConfiguredDoor:
    """The door for ``door.mode``. OSDP: the key from ``scbk_path`` (required with ``secure``);
    a KEYSET from the panel replaces that file and is audited (``osdp_key``, how ``panel_keyset``)
    through ``audit``; ``port``: the bus the device plan resolved (else resolved here). Wiegand
    out: the profile's output lines."""
    gpio = profile.gpio
    if door.mode == "relay":
        return open_door(gpio, exit_pulse_s=exit_pulse_s)
    if door.mode == "osdp":
        from edge.osdp import scbk
        from edge.osdp.channel import SerialChannel
        from edge.osdp.pd import OsdpPeripheral

        key = scbk.read(scbk_path) if door.secure or scbk_path.exists() else None

        def store(new_key: bytes) -> None:
            scbk.write(scbk_path, new_key, overwrite=True)
            if audit is not None:  # the key's id only, never the key
                audit("osdp_key", {"how": "panel_keyset", "key_id": scbk.key_id(new_key)})

        lines = _reader_mode_lines(gpio)
        try:
            channel = SerialChannel.open(port or osdp_port(door, profile), door.baud, rs485_rts=door.rs485_rts)
            pd = OsdpPeripheral(
                channel,
                address=door.address,
                scbk=key,
                secure=door.secure,
                outputs=1 if gpio.door_relay is not None or gpio.simulated or gpio.chip == "sim" else 0,
                identity=identity,
                on_keyset=store,
            )
        except BaseException:
            lines.close()
            raise
        reader = OsdpReaderDoor(lines, pd)
        if start:
            pd.start()
        return reader
    from edge.door.wiegand_out import GpiodWiegandLines, SimWiegandLines, WiegandEmitter, WiegandLines

    lines = _reader_mode_lines(gpio)
    out: WiegandLines
    try:
        if gpio.simulated or gpio.chip == "sim":
            out = SimWiegandLines()
        else:
            if gpio.wiegand_out_d0 is None or gpio.wiegand_out_d1 is None:
                raise ConfigError(
                    "profile",
                    [ConfigProblem("profile", "gpio.wiegand_out_d0", "the Wiegand output lines for wiegand-out")],
                )
            out = GpiodWiegandLines(
                gpio.chip, gpio.wiegand_out_d0, gpio.wiegand_out_d1, inverted=gpio.wiegand_out_inverted
            )
    except BaseException:
        lines.close()
        raise
    return WiegandOutDoor(lines, WiegandEmitter(out))


def open_tamper(door: object, *, debounce_s: float = 0.05) -> TamperSwitch | None:
    """The case switch on the door's lines, or None when the profile wires none (or the door is not
    one of ours: a test's double)."""
    if isinstance(door, DoorController):
        controller = door
    elif isinstance(door, OsdpReaderDoor | WiegandOutDoor):
        controller = door.door
    else:
        return None
    switch = TamperSwitch(controller.lines, debounce_s=debounce_s)
    return switch if switch.wired else None


def credential_for(door: DoorSection) -> Callable[[int], PanelCredential]:
    """How a panel number from the signed list becomes the credential this door reports."""
    from edge.osdp.carddata import PanelCredential

    if door.card_format == "raw":
        return lambda number: PanelCredential.raw(number, door.card_bits)
    fmt = door.card_format
    return lambda number: PanelCredential.from_number(fmt, number)
