"""The shipped unit: Type=notify with a watchdog, hardened, and accepted by systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parents[2] / "packaging" / "systemd" / "gate-edge.service"


def settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_unit_is_notify_with_watchdog_and_hardening() -> None:
    unit = settings()
    assert unit["Type"] == ["notify"]
    assert int(unit["WatchdogSec"][0]) >= 10
    assert unit["KillSignal"] == ["SIGTERM"]
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "StateDirectory": "gate-edge",
        "StateDirectoryMode": "0700",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
    }.items():
        assert unit[key] == [value], key
    assert "char-gpiochip rw" in unit["DeviceAllow"]
    assert unit["ExecStart"][0].split()[1:3] == ["run", "--config"]


def test_systemd_analyze_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    edge = Path(sys.executable).with_name("edge")
    unit = tmp_path / "gate-edge.service"
    unit.write_text(UNIT.read_text().replace("/opt/gate-edge/bin/edge", str(edge)))
    out = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    problems = [line for line in (out.stdout + out.stderr).splitlines() if "gate-edge.service" in line]
    assert problems == [], problems
