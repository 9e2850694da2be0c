"""Credential readers, laid out like pyserial's URL handlers: ``base`` (the value and the Protocol),
``plumbing`` (self-pipe and control FIFO), one reader per module (``sim_reader``, ``serial_reader``,
``wiegand_reader``) and this opener, ``open_card_reader``, which picks one by the config's
``[credentials] card``. Nothing imports this module back.

Credential values are secrets: they never appear in a repr, a log line or an exception message.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import HardwareError

if TYPE_CHECKING:
    from edge.config.final import CredentialPlan
    from edge.config.schema import GpioOffer

from edge.credentials.base import Credential, CredentialReader
from edge.credentials.serial_reader import SerialCredentialReader
from edge.credentials.sim_reader import SimCredentialReader

__all__ = [
    "Credential",
    "CredentialReader",
    "SerialCredentialReader",
    "SimCredentialReader",
    "open_card_reader",
    "open_planned",
]


def open_card_reader(
    backend: str,
    *,
    url: str | None = None,
    baud: int = 9600,
    control: Path | None = None,
    gpio: GpioOffer | None = None,
    wiegand_formats: Sequence[str] = ("H10301", "W34"),
    wiegand_value: str = "number",
) -> CredentialReader | None:
    """The card reader the config's ``[credentials] card`` names; None for ``none``.

    ``wiegand`` reads D0/D1 on the profile's GPIO lines; on a simulated GPIO profile it is the
    simulated reader on the same codec, fed through ``control`` like ``sim``."""
    if backend == "none":
        return None
    if backend == "sim":
        return SimCredentialReader(control)
    if backend == "serial":
        if not url:
            raise HardwareError("credentials.card is 'serial' but no reader port is given", hint="set credentials.port")
        return SerialCredentialReader(url, kind="card", baudrate=baud)
    if backend == "wiegand":
        from edge.credentials.wiegand import VALUES
        from edge.credentials.wiegand_reader import EdgeSource, GpiodEdgeSource, SimWiegandSource, WiegandReader

        if wiegand_value not in VALUES:
            raise HardwareError(f"wiegand_value {wiegand_value!r} is not one of {', '.join(VALUES)}")
        if gpio is None:
            raise HardwareError("credentials.card is 'wiegand' but no GPIO profile is given")
        source: EdgeSource
        if gpio.simulated or gpio.chip == "sim":
            source = SimWiegandSource(format=wiegand_formats[0], control=control)
        elif gpio.wiegand_d0 is None or gpio.wiegand_d1 is None:
            raise HardwareError(
                "credentials.card is 'wiegand' but the profile names no D0/D1 lines",
                hint="set gpio.wiegand_d0 and gpio.wiegand_d1 in the device profile",
            )
        else:
            source = GpiodEdgeSource(gpio.chip, gpio.wiegand_d0, gpio.wiegand_d1)
        return WiegandReader(source, formats=wiegand_formats, value=wiegand_value)
    raise HardwareError(f"card reader backend {backend!r} is not known", hint="use none, sim, serial or wiegand")


def open_planned(plan: CredentialPlan, control: Path | None) -> CredentialReader:
    """The reader the device plan names (``edge.config.final.CredentialPlan``); ``control``: the
    control FIFO the ``sim`` reader and a simulated ``wiegand`` reader are fed through."""
    reader = open_card_reader(
        plan.reader,
        url=plan.port,
        baud=plan.baud,
        control=control if plan.reader in ("sim", "wiegand") else None,
        gpio=plan.gpio,
        wiegand_formats=plan.wiegand_formats,
        wiegand_value=plan.wiegand_value,
    )
    if reader is None:
        raise HardwareError("no card reader configured", hint="set [credentials] card")
    return reader
