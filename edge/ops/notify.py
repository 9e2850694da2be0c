"""sd_notify written by hand: one datagram per state change on the UNIX socket systemd names.

No libsystemd dependency. Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op, so the
agent runs the same from a shell, a test or the demo.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: the leading byte is NUL on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = self._watchdog_period(env)
        self._sock: socket.socket | None = None

    @staticmethod
    def _watchdog_period(env: Mapping[str, str]) -> float | None:
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and pid != str(os.getpid()):
            return None  # the watchdog is meant for another process (e.g. our parent)
        return int(usec) / 1_000_000

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the period systemd gave us, as sd_watchdog_enabled advises."""
        return self.watchdog_s / 2 if self.watchdog_s else None

    def notify(self, *states: str) -> bool:
        if not self.address:
            return False
        payload = "\n".join(states).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(payload, self.address)
        except OSError as exc:
            log.warning("sd_notify to the service manager failed: %s", exc.strerror or exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
