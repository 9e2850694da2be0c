"""The independent OSDP control panel: the pure-Python ``osdp`` package (osdp 1.6, CP only).

It shares no code with libosdp, so a reader that completes its poll, ID, capability and Secure
Channel exchanges and delivers card reads to it speaks OSDP as the standard says, not merely as
libosdp says. Both packages install a module named ``osdp``; this one lives in its own folder
(``scripts/setup.sh`` puts it in ``.venv/peers/osdp-python``; ``$EDGE_OSDP_PEER`` overrides) and is
loaded here under the name ``osdp_peer``. It needs ``pycryptodome`` (the ``test`` extra).

The peer derives each reader's key from a master key and the reader's cUID, as some panels do;
``IndependentPanel`` gives it the reader's installed key instead, as a panel configured with a
per-reader SCBK would use it. It talks to the panel end of a ``PtyBus`` through ``FdConnection``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import select
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from edge.errors import HardwareError

NAME = "osdp_peer"


def peer_dir() -> Path:
    return Path(os.environ.get("EDGE_OSDP_PEER") or Path(sys.prefix) / "peers" / "osdp-python")


def load() -> ModuleType:
    """The peer package, loaded once under ``osdp_peer``; ``HardwareError`` when it is not installed."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    init = peer_dir() / "osdp" / "__init__.py"
    if not init.exists():
        raise HardwareError(
            f"the independent OSDP panel (osdp 1.6) is not installed in {init.parent.parent}",
            hint="run scripts/setup.sh (or pip install --no-deps --target .venv/peers/osdp-python osdp==1.6)",
        )
    spec = importlib.util.spec_from_file_location(NAME, init, submodule_search_locations=[str(init.parent)])
    if spec is None or spec.loader is None:
        raise HardwareError(f"cannot load the independent OSDP panel from {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        del sys.modules[NAME]
        raise HardwareError(
            f"the independent OSDP panel does not import: {exc}", hint="pip install pycryptodome"
        ) from exc
    peer_log = logging.getLogger("osdp")
    for handler in list(peer_log.handlers):  # it prints to stderr itself; let logging decide instead
        peer_log.removeHandler(handler)
    return module


def _connection_class(peer: ModuleType) -> type[Any]:
    class FdConnection(peer.OsdpConnection):  # type: ignore[name-defined,misc]
        """The peer's connection on the panel end of a pty (reads wait up to ``timeout_s``)."""

        def __init__(self, fd: int, baud: int, timeout_s: float = 0.5) -> None:
            self.fd = fd
            self._baud = baud
            self.timeout_s = timeout_s
            self._open = False

        @property
        def baud_rate(self) -> int:
            return self._baud

        @property
        def is_open(self) -> bool:
            return self._open

        def open(self) -> None:
            self._open = True

        def close(self) -> None:
            self._open = False

        def write(self, buf: bytes) -> None:
            view = memoryview(buf)
            while view:
                select.select([], [self.fd], [], self.timeout_s)
                view = view[os.write(self.fd, view) :]

        def read(self, size: int = 1) -> bytes:
            if not select.select([self.fd], [], [], self.timeout_s)[0]:
                return b""
            try:
                return os.read(self.fd, size)
            except BlockingIOError:
                return b""

    return FdConnection


class IndependentPanel:
    """The peer panel polling one reader at ``address`` on ``fd``, with Secure Channel when given a key."""

    def __init__(self, fd: int, *, address: int, scbk: bytes | None, baud: int = 9600) -> None:
        peer = load()
        self.peer = peer
        self.address = address
        self.reads: list[tuple[int, bytes, int]] = []  # (bit count, data, format code)
        self.handshake_failures = 0
        self._seen = threading.Condition()
        outer = self

        class Panel(peer.ControlPanel):  # type: ignore[name-defined,misc]
            def on_raw_card_data_reply_received(self, address: int, raw: Any) -> None:
                del address  # the library's callback signature; one PD on this bus
                with outer._seen:
                    outer.reads.append((int(raw.bit_count), bytes(raw.data), int(raw.format_code.value)))
                    outer._seen.notify_all()

        self.cp = Panel(master_key=bytes(16))
        self.cp._reply_timeout = 3.0
        self.connection = _connection_class(peer)(fd, baud)
        self.connection_id = self.cp.start_connection(self.connection)
        self.cp.add_device(self.connection_id, address, True, scbk is not None)
        self.device = self.cp._buses[self.connection_id]._configured_devices[address]
        if scbk is not None:
            key = bytes(scbk)
            # a per-reader key, as the panel's reader configuration holds it (not diversified)
            self.device._secure_channel.calculate_scbk = lambda: key
            initialize = self.device.initialize_secure_channel

            def counted(reply: Any) -> None:
                try:
                    initialize(reply)
                except Exception:
                    self.handshake_failures += 1
                    raise

            self.device.initialize_secure_channel = counted

    def secure(self) -> bool:
        return bool(self.device.is_security_established)

    def online(self) -> bool:
        return bool(self.cp.is_online(self.connection_id, self.address))

    def wait_until(self, test: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not test():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def wait_reads(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._seen:
            while len(self.reads) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._seen.wait(left)
        return True

    def id_report(self) -> Any:
        return self.cp.id_report(self.connection_id, self.address)

    def capabilities(self) -> dict[str, tuple[int, int]]:
        """Function name -> (compliance level, number of items)."""
        found = self.cp.device_capabilities(self.connection_id, self.address)
        return {c.function.name: (int(c.compliance), int(c.number_of)) for c in found.capabilities}

    def led_green(self) -> bool:
        p = self.peer
        control = p.ReaderLedControl(
            0,
            0,
            p.TemporaryReaderControlCode.Nop,
            0,
            0,
            p.LedColor.Black,
            p.LedColor.Black,
            0,
            p.PermanentReaderControlCode.SetPermanentState,
            5,
            0,
            p.LedColor.Green,
            p.LedColor.Black,
        )
        return bool(self.cp.reader_led_control(self.connection_id, self.address, p.ReaderLedControls([control])))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cp.shutdown()
