"""A real pty between the terminal's reader and a panel, for the OSDP tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from edge.osdp.panel import PtyBus

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
OTHER_KEY = bytes.fromhex("ffeeddccbbaa99887766554433221100")


@pytest.fixture
def bus() -> Iterator[PtyBus]:
    pytest.importorskip("osdp_sys", reason="libosdp is not installed (pip install 'gate-edge[osdp]')")
    with PtyBus() as pty_bus:
        yield pty_bus
