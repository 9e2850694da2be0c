"""Run ``edge-fpsim`` as a child process: the tests', the demo's and the HIL suite's way in.

    with SimulatorProcess(model="r503", finger_always=True) as sim:
        driver = FingerprintDriver.open(sim.port)
        sim.control.place("FVC2002-DB1_B-102:3")

``port`` is a stable symlink to the simulator's pty (it survives ``unplug``/``replug``); ``pty`` is
the path the simulator printed on its first stdout line. Exit stops the process and reaps it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from edge.errors import HardwareError


class SimulatorError(HardwareError):
    """The simulator did not start, or refused a control command."""


class ControlClient:
    """Client of the simulator's control socket: one command line, one reply line."""

    def __init__(self, path: Path, timeout_s: float = 120.0) -> None:
        self.path = path
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout_s)
            sock.connect(str(self.path))
            sock.sendall(line.encode() + b"\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        text = reply.decode().strip()
        if text.startswith("error"):
            raise SimulatorError(f"simulator refused {line.split(' ', maxsplit=1)[0]!r}: {text[6:]}")
        return text

    def place(self, finger_ref: str) -> None:
        """Put a finger on the glass, e.g. ``FVC2002-DB1_B-101:2`` (finger id : impression)."""
        self.command(f"place {finger_ref}")

    def lift(self) -> None:
        self.command("lift")

    def nothing(self) -> None:
        self.command("nothing")

    def smudge(self) -> None:
        self.command("smudge")

    def fault(self, spec: str) -> None:
        self.command(f"fault {spec}")

    def clear_faults(self) -> None:
        self.command("clear-faults")

    def unplug(self) -> None:
        self.command("unplug")

    def replug(self) -> str:
        return self.command("replug").removeprefix("ok ").strip()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.command("status"))
        return result


class SimulatorProcess:
    """Start ``edge-fpsim`` with the given options; stop it on exit."""

    def __init__(
        self,
        *,
        model: str = "r307",
        finger_always: bool = False,
        finger: str | None = None,
        state: Path | None = None,
        byte_timing: bool = False,
        faults: Sequence[str] = (),
        seed: int = 0,
        baud_applies: str = "now",
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 300.0,
    ) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="fpsim-"))
        self.port = str(self._tmp / "tty")
        self.control = ControlClient(self._tmp / "control.sock")
        self.pty = ""
        args = [sys.executable, "-m", "edge.cli.fpsim", "--model", model, "--link", self.port]
        args += ["--control", str(self.control.path), "--seed", str(seed), "--baud-applies", baud_applies]
        if finger_always:
            args.append("--finger-always")
        if finger:
            args += ["--finger", finger]
        if state is not None:
            args += ["--state", str(state)]
        if byte_timing:
            args.append("--byte-timing")
        for spec in faults:
            args += ["--fault", spec]
        args += list(extra_args)
        self.args = args
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr: Any = None

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def start(self) -> None:
        # stderr goes to a file: a pipe nobody reads could fill up and stall the simulator.
        self._stderr = (self._tmp / "stderr.txt").open("wb")
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self._stderr)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, min(remaining, 0.5)))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1)
                if not chunk:
                    break
                line += chunk
            elif self.proc.poll() is not None or remaining <= 0:
                break
        if not line.endswith(b"\n"):
            err = self._stop_and_collect()
            raise SimulatorError(f"edge-fpsim did not print its pty path: {err.strip()[-500:]}")
        self.pty = line.decode().strip()
        # The control socket is bound before the path is printed; wait for the listener anyway.
        for _ in range(100):
            if self.control.path.exists():
                break
            time.sleep(0.02)

    def _stop_and_collect(self) -> str:
        proc = self.proc
        if proc is None:
            return ""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()
        return (self._tmp / "stderr.txt").read_text(errors="replace")

    def stop(self) -> str:
        """Stop the simulator; return what it wrote on stderr."""
        err = self._stop_and_collect()
        self.proc = None
        shutil.rmtree(self._tmp, ignore_errors=True)
        return err

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with contextlib.suppress(OSError):
            self.stop()
