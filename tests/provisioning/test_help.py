"""Every edge-provision subcommand (and edge run/status) answers --help without heavy imports."""

from __future__ import annotations

import subprocess
import sys

from provisioning.cli import COMMANDS

HEAVY = ("cv2", "ai_edge_litert", "tflite_runtime", "paho", "faiss", "numpy", "prometheus_client", "gpiod")


def test_every_subcommand_help_imports_nothing_heavy() -> None:
    cases = [("provisioning.cli", name) for name in sorted(COMMANDS)] + [
        ("edge.cli.main", "run"),
        ("edge.cli.main", "status"),
    ]
    # One interpreter for all of them: a heavy import by any --help stays in sys.modules and is caught.
    code = "import sys, importlib\n"
    for module, command in cases:
        code += (
            f"rc = importlib.import_module({module!r}).main([{command!r}, '--help'])\n"
            f"assert rc == 0, {command!r}\n"
            f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
            f"assert not heavy, ({command!r}, heavy)\n"
        )
    code += "print('ALL OK')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "ALL OK" in result.stdout
