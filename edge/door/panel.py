"""What the gate calls when the terminal is a reader under the site's panel (OSDP or Wiegand out).

In these modes the terminal does not open the door: when a person is recognised (face, finger) or
presents a card, PIN or QR code that the signed list maps to a panel number, the gate calls
``report_card`` with that number as a ``PanelCredential`` and the panel decides, as it would for
any card reader. ``PanelCredential`` (``edge.osdp.carddata``) is never a biometric and never
printed. ``report_card`` returns at once; it raises a ``HardwareError`` when the read cannot reach
the panel (the panel silent, the Secure Channel down, the queue full): the gate then treats the
door as failed, as it does a relay that cannot be driven.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from edge.osdp.carddata import PanelCredential


@dataclass(frozen=True)
class PanelLinkStatus:
    mode: str  # "osdp" or "wiegand-out"
    ok: bool  # the panel can get a card read now
    detail: str  # for health events and selftest; never holds a card number or a key


class PanelOutput(Protocol):
    def report_card(self, credential: PanelCredential) -> None: ...

    def link_status(self) -> PanelLinkStatus: ...
