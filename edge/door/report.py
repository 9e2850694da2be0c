"""The reader modes' grant: who the terminal recognised, told to the site's panel (issue 15).

A grant becomes the person's panel number from the signed list (sealed so only the site's gates
read it: ``edge.credentials.panel_number``), encoded as the card format the panel expects
(``[door] card_format``) and sent as an OSDP card read or a Wiegand frame. The number is never
logged; a person without one is denied at the gate (``no_panel_number``) since the panel could
not be told who it is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from edge.door.panel import PanelOutput
from edge.errors import HardwareError
from edge.osdp.carddata import PanelCredential


class PanelNumbers(Protocol):
    def panel_number(self, subject: str) -> int | None: ...


class PanelReporter:
    def __init__(
        self, output: PanelOutput, numbers: PanelNumbers, credential: Callable[[int], PanelCredential]
    ) -> None:
        self.output = output
        self.numbers = numbers
        self.credential = credential

    def number(self, subject: str) -> int | None:
        return self.numbers.panel_number(subject)

    def report(self, subject: str) -> None:
        number = self.numbers.panel_number(subject)
        if number is None:
            raise HardwareError("no panel number to report", hint="issue the list with a panel number per person")
        self.output.report_card(self.credential(number))
