"""The selftest's checks. Storage, clock, settings, trust and broker run here; camera, sensor and
models are built from the agent's ports (``edge.agent.ports``) by ``provisioning.hooks``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

from edge.agent.ports import CameraPort, FacePipelinePort, SensorHealthPort
from edge.config.load import load_config
from edge.errors import ConfigError, EdgeError
from edge.state import StateDir
from provisioning.selftest import Check, CheckResult

MIN_FREE_BYTES = 256 * 1024 * 1024
WARN_FREE_BYTES = 1024 * 1024 * 1024
EARLIEST_SANE_TIME = 1_704_067_200  # 2024-01-01: a clock before this was never set


def storage(state: StateDir) -> CheckResult:
    if not state.root.exists():
        return CheckResult("fail", f"{state.root} does not exist", "run `edge-provision init`")
    problems = []
    mode = state.root.stat().st_mode & 0o777
    if mode & 0o077:
        problems.append((f"{state.root} is mode {mode:04o}", f"chmod 700 {state.root}"))
    if state.root.stat().st_uid != os.geteuid():
        problems.append((f"{state.root} belongs to another user", f"chown the directory to uid {os.geteuid()}"))
    for secret in (state.identity_key, state.gallery_key, state.osdp_scbk):
        if secret.exists() and secret.stat().st_mode & 0o077:
            problems.append((f"{secret.name} is readable by others", f"chmod 600 {secret}"))
    probe = state.root / ".selftest-write"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        problems.append((f"cannot write in {state.root}: {exc.strerror}", "check the mount is read-write and not full"))
    if problems:
        return CheckResult("fail", "; ".join(p for p, _ in problems), "; ".join(f for _, f in problems))
    free = shutil.disk_usage(state.root).free
    text = f"{state.root} 0700, writable, {free / 2**30:.1f} GiB free"
    if free < MIN_FREE_BYTES:
        return CheckResult("fail", text, "free at least 256 MiB: the outbox and stores need room")
    if free < WARN_FREE_BYTES:
        return CheckResult("warn", text, "less than 1 GiB free: the outbox may fill during a long outage")
    return CheckResult("pass", text)


def clock(
    state: StateDir, *, timedatectl: str | None = "timedatectl", now: Callable[[], float] = time.time
) -> CheckResult:
    """NTP sync state from ``timedatectl show`` where systemd runs it; otherwise 'unknown'."""
    if now() < EARLIEST_SANE_TIME:
        return CheckResult(
            "fail",
            time.strftime("clock reads %Y-%m-%d", time.gmtime(now())),
            "set the clock and enable NTP: consent validity and event times depend on it",
        )
    behind = _before_the_list(state, now())
    if behind is not None:
        return behind
    binary = shutil.which(timedatectl) if timedatectl else None
    if binary is None:
        return CheckResult("unknown", "timedatectl not found; NTP state unknown", "make sure an NTP client runs")
    try:
        out = subprocess.run(
            [binary, "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult("unknown", f"timedatectl failed ({exc.__class__.__name__})", "check NTP by hand")
    value = out.stdout.strip()
    if out.returncode != 0 or value not in ("yes", "no"):
        return CheckResult(
            "unknown", "timedatectl gave no NTP state (no systemd here?)", "make sure an NTP client runs"
        )
    if value == "yes":
        return CheckResult("pass", "NTP synchronised")
    return CheckResult("fail", "NTP not synchronised", "timedatectl set-ntp true; check the NTP server is reachable")


def _before_the_list(state: StateDir, now: float) -> CheckResult | None:
    """A clock that reads before the consent list in force was issued (it stepped back: an NTP
    correction, a Pi whose RTC battery is dead) makes every consent look not yet granted: the
    agent then fails biometrics closed and deletes nothing. Said here in so many words."""
    import sqlite3

    from edge.consent.ledger import CLOCK_SKEW_S

    if not state.consent_db.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{state.consent_db}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT version, issued_at FROM meta WHERE id = 1").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    if row is None or now >= float(row[1]) - CLOCK_SKEW_S:
        return None
    ahead = (float(row[1]) - now) / 3600.0
    return CheckResult(
        "fail",
        time.strftime("clock reads %Y-%m-%d %H:%M UTC", time.gmtime(now))
        + f", {ahead:.1f} h before consent list v{row[0]} was issued: biometrics fail closed until it is right",
        "set the clock and enable NTP (timedatectl set-ntp true); on a Pi without RTC battery, fit one "
        "or wait for NTP before the gate is used",
    )


def settings(state: StateDir) -> CheckResult:
    try:
        config, profile = load_config(state.settings)
    except ConfigError as exc:
        first = exc.problems[0].render() if exc.problems else str(exc)
        more = f" (+{len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        return CheckResult("fail", first + more, f"edge validate {state.settings}")
    return CheckResult("pass", f"site {config.device.site}, profile {config.device.profile} ({profile.board.id})")


def trust(state: StateDir) -> CheckResult:
    keys = state.consent_authority_keys()
    if not keys:
        return CheckResult("fail", "no consent-authority key pinned", "edge-provision trust --consent-key FILE")
    return CheckResult("pass", f"{len(keys)} consent-authority key(s) pinned")


def broker(state: StateDir, timeout_s: float = 10.0) -> CheckResult:
    from provisioning.cmd_broker import probe_settings
    from provisioning.files import read_settings

    doc = read_settings(state)
    mqtt = doc.get("mqtt", {})
    if "url" not in mqtt:
        return CheckResult("fail", "no broker configured", "edge-provision broker --url URL")
    result = probe_settings(state, mqtt, str(doc.get("device", {}).get("site", "")), timeout_s)
    if not result.ok:
        return CheckResult("fail", f"{mqtt['url']}: {result.reason}", result.fix)
    return CheckResult(
        "pass", f"{mqtt['url']}: CONNACK {result.connect_ms:.0f} ms, PUBACK {result.publish_ms:.0f} ms (ACL allows)"
    )


def stores(state: StateDir) -> CheckResult:
    """Damage and degradation the agent recorded (edge.ops.findings): quarantined gallery rows,
    stores set aside, safe mode, deletions and audit records waiting for the disk."""
    from edge.ops.findings import storage_findings

    found = storage_findings(state)
    if not found:
        return CheckResult("pass", "no damaged store, no quarantined gallery row, no failed start")
    what, fix = "; ".join(f.what for f in found), "; ".join(f.fix for f in found)
    if any(f.severity == "fail" for f in found):
        return CheckResult("fail", what, fix)
    return CheckResult("warn", what, fix)


BASE_CHECKS = [
    Check("storage", storage),
    Check("stores", stores),
    Check("clock", clock),
    Check("settings", settings),
    Check("trust", trust),
    Check("broker", broker),
]


# --------------------------------------------------------------------------- device checks on ports


def _brightness(frame: Any) -> float | None:
    mean = getattr(frame, "mean", None)
    return float(mean()) if callable(mean) else None


def camera_check(
    open_camera: Callable[[], CameraPort],
    pipeline: FacePipelinePort | None,
    *,
    frames: int = 10,
    timeout_s: float = 5.0,
) -> Check:
    def run(_state: StateDir) -> CheckResult:
        try:
            camera = open_camera()
        except EdgeError as exc:
            return CheckResult("fail", f"camera does not open: {exc}", exc.hint or "check camera.source and the cable")
        got: list[float] = []
        faces = 0
        started = time.monotonic()
        try:
            while len(got) < frames and time.monotonic() - started < timeout_s:
                frame = camera.read()
                if frame is None:
                    time.sleep(0.01)
                    continue
                level = _brightness(frame)
                got.append(level if level is not None else -1.0)
                if pipeline is not None and faces == 0 and pipeline.process(frame, rule="gate") is not None:
                    faces += 1
                del frame
        finally:
            camera.close()
        if not got:
            return CheckResult("fail", f"no frame in {timeout_s:.0f} s", "check the camera cable and camera.source")
        elapsed = time.monotonic() - started
        levels = [v for v in got if v >= 0]
        mean = sum(levels) / len(levels) if levels else None
        detail = f"{len(got)} frames in {elapsed:.1f} s"
        if mean is not None:
            detail += f", mean level {mean:.0f}"
            if not 40 <= mean <= 215:
                return CheckResult("warn", detail, "too dark or too bright: adjust lighting or exposure")
        if pipeline is not None:
            if not faces:
                return CheckResult("warn", detail + ", no face found", "stand in front of the camera and run again")
            detail += ", face detected"
        return CheckResult("pass", detail)

    return Check("camera", run)


def sensor_check(open_sensor: Callable[[], SensorHealthPort]) -> Check:
    def run(_state: StateDir) -> CheckResult:
        sensor: SensorHealthPort | None = None
        try:
            sensor = open_sensor()
            count, capacity, health = sensor.template_count(), sensor.capacity, sensor.health()
        except EdgeError as exc:
            return CheckResult(
                "fail", f"fingerprint sensor: {exc}", exc.hint or "check wiring (TX/RX crossed), baud rate and password"
            )
        finally:
            close = getattr(sensor, "close", None)
            if callable(close):
                close()
        detail = f"handshake ok, {count}/{capacity} templates, {health}"
        if capacity and count >= capacity:
            return CheckResult("warn", detail, "the sensor library is full")
        return CheckResult("pass", detail)

    return Check("fingerprint", run)


def card_reader_check(open_reader: Callable[[], Any]) -> Check:
    """Opens the configured card reader; a Wiegand reader's D0/D1 must idle high."""

    def run(_state: StateDir) -> CheckResult:
        try:
            reader = open_reader()
        except EdgeError as exc:
            return CheckResult("fail", f"card reader: {exc}", exc.hint or "check the reader's wiring and [credentials]")
        try:
            problem = getattr(reader, "idle_problem", None)
            found = problem() if callable(problem) else None
            if found:
                return CheckResult(
                    "fail",
                    found,
                    "power the reader; check the level shifter's supply and that D0/D1 are not shorted to GND",
                )
            return CheckResult(
                "pass", f"{type(reader).__name__} opened" + (", D0/D1 idle high" if callable(problem) else "")
            )
        finally:
            reader.close()

    return Check("card reader", run)


def models_check(verify: Callable[[], object], timed_inference: Callable[[], float] | None = None) -> Check:
    def run(_state: StateDir) -> CheckResult:
        verify()  # raises ModelError for an unknown or altered file; run_checks turns it into a failure
        detail = "hashes match the manifest"
        if timed_inference is not None:
            detail += f", inference {timed_inference() * 1000:.0f} ms"
        return CheckResult("pass", detail)

    return Check("models", run)


def osdp_check(open_door: Callable[[], Any], *, secure: bool, key_path: Any, wait_s: float = 8.0) -> Check:
    """[door] mode = "osdp": the panel polls this reader and, with ``secure``, the Secure Channel comes up."""

    def run(_state: StateDir) -> CheckResult:
        from edge.osdp import scbk

        key = ""
        if key_path.exists():
            try:
                key = f", key id {scbk.key_id(scbk.read(key_path))}"
            except EdgeError:
                key = ""
        try:
            door = open_door()
        except EdgeError as exc:
            return CheckResult("fail", f"OSDP reader: {exc}", exc.hint or "check [door] and `edge-provision osdp-key`")
        try:
            pd = door.pd
            status = pd.wait(secure=secure, timeout_s=wait_s)
            where = f"address {pd.address}"
            if not status.online:
                return CheckResult(
                    "fail",
                    f"no poll from the panel at {where} in {wait_s:.0f} s"
                    + (f" ({status.port_error})" if status.port_error else ""),
                    "check RS-485 A/B (swap them if unsure), ground, termination, and that the panel's reader port "
                    "uses this address and [door] baud",
                )
            if secure and not status.secure:
                return CheckResult(
                    "fail",
                    f"the panel polls {where} but refuses the Secure Channel: the installed key{key or ' (none)'} is "
                    "not the panel's key for this reader",
                    "edge-provision osdp-key --force --hex-stdin with the panel's key (or --install-mode)",
                )
            if not secure:
                return CheckResult(
                    "warn",
                    f"PLAIN MODE: panel polling {where}; card numbers cross the bus in clear"
                    + (", Secure Channel up all the same" if status.secure else ""),
                    "install the panel's key (edge-provision osdp-key) and set [door] secure = true",
                )
            return CheckResult("pass", f"panel polling {where}, Secure Channel up{key}")
        finally:
            door.close()

    return Check("osdp", run)


def wiegand_out_check(open_door: Callable[[], Any]) -> Check:
    """[door] mode = "wiegand-out": the output lines can be driven (a Wiegand panel sends nothing back)."""

    def run(_state: StateDir) -> CheckResult:
        try:
            door = open_door()
        except EdgeError as exc:
            return CheckResult("fail", f"Wiegand output: {exc}", exc.hint or "check gpio.wiegand_out_d0/d1")
        door.close()
        return CheckResult("pass", "Wiegand output lines idle (no reply to check: present a test card at the panel)")

    return Check("wiegand out", run)


def tamper_check(open_switch: Callable[[], Any]) -> Check:
    """The case switch's state now; a case open during the check is a warning (close it when done)."""

    def run(_state: StateDir) -> CheckResult:
        try:
            switch, close = open_switch()
        except EdgeError as exc:
            return CheckResult("fail", f"tamper switch: {exc}", exc.hint or "check gpio.tamper")
        try:
            if switch is None:
                return CheckResult("not wired", "no tamper switch in the profile (gpio.tamper)", "")
            text = switch.describe()
            if "OPEN" in text:
                return CheckResult("warn", text, "close the case; an open case raises a tamper alarm")
            return CheckResult("pass", text)
        finally:
            close()

    return Check("tamper", run)
