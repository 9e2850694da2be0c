"""Run a real Mosquitto broker on a free loopback port, from its own config file.

Used by the tests (one broker per test session, killed and restarted by fault tests) and by
``edge demo``. The broker is Debian's ``mosquitto`` binary; no system service is involved.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from edge.errors import TransportError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise TransportError(
        "mosquitto is not installed", hint="sudo apt-get install mosquitto (scripts/setup.sh does this)"
    )


class Mosquitto:
    """A Mosquitto process serving ``port`` on 127.0.0.1 with the given extra config lines.

    ``extra`` is appended after the listener line, so a test can add TLS (``cafile``, ``certfile``,
    ``keyfile``, ``require_certificate``), ``password_file`` or ``acl_file`` settings. Without a
    password file or certificate requirement, anonymous clients are allowed.
    """

    def __init__(self, workdir: Path, *, port: int | None = None, extra: str = "", anonymous: bool = True) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            "persistence false",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "max_inflight_messages 20",
            "max_queued_messages 100000",
            self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        return self.conf

    def start(self, timeout_s: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.write_config()
        self.proc = subprocess.Popen(
            [find_mosquitto(), "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise TransportError(f"mosquitto exited at start (code {self.proc.returncode}): {log[-400:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise TransportError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
