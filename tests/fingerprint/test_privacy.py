"""Templates and passwords never reach log lines, exception messages or the frame ring."""

from __future__ import annotations

import logging

import pytest

from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.errors import FingerprintError
from edge.fingerprint.sim.process import SimulatorProcess

pytestmark = pytest.mark.timeout(120)


def _windows(data: bytes, size: int = 8) -> set[str]:
    return {data[i : i + size].hex() for i in range(0, len(data) - size, 4) if any(data[i : i + size])}


def test_no_template_or_password_in_logs_errors_or_frames(sim307: SimulatorProcess, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    password = 0x5EC2E7A1
    texts: list[str] = []
    with FingerprintDriver.open(sim307.port) as drv:
        drv.set_password(password)
        try:
            assert drv.capture()
            assert drv.image2tz(1) == 0
            template = drv.read_template(1, expected=512)
            sim307.control.fault("corrupt:1")
            for call in (lambda: drv.read_template(1, expected=512), lambda: drv.write_template(template, 2)):
                try:
                    call()
                    call()
                except FingerprintError as exc:
                    texts += [str(exc), exc.one_line(), exc.frames_text(), repr(exc)]
            sim307.control.clear_faults()
            texts += list(drv.frames)
        finally:
            sim307.control.clear_faults()
            drv.set_password(0)
    texts += [r.getMessage() for r in caplog.records]
    blob = "\n".join(texts).lower()
    assert "data packet" in blob or "data bytes" in blob  # data frames were logged, by size only
    leaks = [w for w in _windows(template) if w in blob.replace(" ", "")]
    assert leaks == []
    assert f"{password:08x}" not in blob
