"""Every console script exists, answers --help without importing heavy modules, and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPTS = {
    "edge": "edge.cli.main",
    "edge-provision": "provisioning.cli",
    "edge-site": "edge.cli.site",
    "edge-fpsim": "edge.cli.fpsim",
}
HEAVY = ("cv2", "ai_edge_litert", "tflite_runtime", "paho", "faiss", "numpy")


@pytest.mark.parametrize(("script", "module"), sorted(SCRIPTS.items()))
def test_help_is_instant_and_imports_nothing_heavy(script: str, module: str) -> None:
    code = (
        "import sys\n"
        f"from {module} import main\n"
        "try:\n"
        "    rc = main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "raise SystemExit(rc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "usage" in result.stdout.lower()


def test_edge_help_lists_every_subcommand() -> None:
    from edge.cli.main import COMMANDS

    result = subprocess.run(
        [sys.executable, "-m", "edge", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name in result.stdout


def test_unknown_subcommand_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    from edge.cli.main import main

    assert main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err
