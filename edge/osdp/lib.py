"""libosdp's low-level module (``osdp_sys``), imported only where OSDP is configured.

The ``osdp`` wrapper module of the same wheel is not used: its PD command handler returns a
constant ``(0, None)``, and libosdp 3.2.9's C callback (``pd_command_cb``) releases the second item
of the returned tuple once too often. With a constant tuple that item is ``None``, whose reference
count falls by one per panel command until CPython 3.11 aborts (a few thousand commands). The PD
here answers with a tuple built afresh each time (``edge.osdp.pd``): the item released too often is
then the one the leaked tuple holds, and nothing is freed twice (one 2-tuple, 56 bytes, stays
allocated per command). ``tests/osdp/test_pd.py`` counts ``None``'s references across commands.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edge.errors import HardwareError

LOG_LEVELS = {"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


def import_osdp_sys(what: str = "OSDP reader mode") -> ModuleType:
    try:
        return importlib.import_module("osdp_sys")
    except ImportError as exc:
        raise HardwareError(
            f"{what} needs libosdp, which is not installed",
            hint="pip install 'gate-edge[osdp]' (the libosdp package; wheels for x86_64 and aarch64)",
        ) from exc


def set_log_level(level: str) -> None:
    """libosdp's own log (printed on standard output, which journald keeps): ``error`` by default.
    It names commands and states, never card data or keys, at every level above ``debug``."""
    import_osdp_sys().set_loglevel(LOG_LEVELS[level])
