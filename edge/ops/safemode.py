"""Crash-loop-proof start: after the same start-up failure three times, come up in safe mode.

systemd restarts ``edge run`` whenever it exits (``Restart=always``). A start-up that fails the
same way every time (an unreadable key, a camera driver that aborts, a model file that no longer
verifies) would restart it every 2 s forever, and nobody would pass, not even by card. So every
start is recorded in ``<state>/start-attempts.json`` (``StartAttempts``):

* before the build: ``begin`` marks a start in progress; a mark left by the previous process
  means it died during start-up (SIGKILL, a crash in native code): that counts as a failure too;
* a failure (an exception before READY) is recorded with its signature (the error's class and
  its one line); the same signature again counts up, another starts the count at 1;
* READY clears the record.

When the count reaches ``LIMIT`` (3), the agent does not exit: it builds again with every
biometric device off (``credential_only``) and runs the credential path (card, PIN, QR, the
door, the signed events) in safe mode. If even that build fails it runs the door and the reader
alone on the last consent list (``minimal``). Safe mode says why, everywhere an operator looks:
one ``safe_mode`` alarm (critical, component ``agent``), a ``safe_mode`` audit record with the
reason, the systemd STATUS line, the log, and ``edge status`` / ``edge-provision selftest``
(which read the record). Every restart tries a normal start first, so a fix followed by
``systemctl restart gate-edge`` leaves safe mode.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from edge.errors import EdgeError
from edge.events.kinds import Alarm
from edge.state import StateDir, atomic_write

if TYPE_CHECKING:
    from edge.agent.wired import Wired
    from edge.agent.wiring import Notify as Notifier
    from edge.config.schema import AgentConfig, Profile

log = logging.getLogger(__name__)

LIMIT = 3
DIED = "the agent died during start-up (killed, or a crash in native code)"


@dataclass
class StartRecord:
    failures: int = 0  # failed starts in a row with this signature
    signature: str = ""  # the error's class and one line (what "the same way" means)
    hint: str = ""  # the fix the error names, if any
    first_at: float = 0.0
    last_at: float = 0.0
    in_progress: bool = False
    safe_mode: bool = False
    safe_since: float = 0.0
    running: bool = False  # READY was reached and no orderly stop followed (yet)


def signature(exc: BaseException) -> tuple[str, str]:
    """(signature, hint) of a start-up failure: stable across restarts, no secrets (EdgeError lines)."""
    if isinstance(exc, EdgeError):
        return f"{exc.__class__.__name__}: {str(exc)[:160]}", exc.hint
    return f"{exc.__class__.__name__}: {str(exc)[:160]}", ""


class StartAttempts:
    """The start-attempt record in the state directory. A disk that refuses it only logs: the
    record is advice for the start-up, never a reason to fail."""

    def __init__(self, state: StateDir, *, clock: Callable[[], float] = time.time) -> None:
        self.path = state.start_attempts
        self.clock = clock
        self.record = load(state)

    def _save(self) -> None:
        try:
            atomic_write(self.path, json.dumps(asdict(self.record), sort_keys=True).encode(), 0o600)
        except OSError as exc:
            log.warning("start-attempt record not saved (%s)", exc.strerror)

    def begin(self) -> None:
        """Mark a start in progress; a mark the last process left counts as a failure (it died)."""
        if self.record.in_progress:
            self._count(DIED, "look at the journal (journalctl -u gate-edge) for the last lines before it died")
        self.record.in_progress = True
        self._save()

    def failed(self, exc: BaseException) -> int:
        """Record a failed start; returns how many times in a row it failed this way."""
        text, hint = signature(exc)
        self._count(text, hint)
        self.record.in_progress = False
        self._save()
        return self.record.failures

    def _count(self, text: str, hint: str) -> None:
        now = self.clock()
        if text == self.record.signature:
            self.record.failures += 1
        else:
            self.record.failures, self.record.signature, self.record.first_at = 1, text, now
        self.record.hint = hint
        self.record.last_at = now

    @property
    def exhausted(self) -> bool:
        return self.record.failures >= LIMIT

    def entered_safe_mode(self) -> None:
        self.record.safe_mode = True
        self.record.safe_since = self.clock()
        self.record.in_progress = False
        self._save()

    def succeeded(self) -> None:
        """READY: a normal start clears the failures (safe mode keeps them, so status can show why)
        and marks the agent running until its orderly stop (``stopped``)."""
        if not self.record.safe_mode:
            self.record = StartRecord()
        self.record.running = True
        self.record.in_progress = False
        self._save()

    def stopped(self) -> None:
        """An orderly stop (SIGTERM): the next start is not an unclean one."""
        self.record.running = False
        if self.record == StartRecord():
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("start-attempt record not cleared (%s)", exc.strerror)
            return
        self._save()


def load(state: StateDir) -> StartRecord:
    try:
        raw = json.loads(state.start_attempts.read_bytes())
        fields = StartRecord.__dataclass_fields__
        return StartRecord(**{k: raw[k] for k in fields if k in raw})
    except (OSError, ValueError, TypeError):
        return StartRecord()


def credential_only(config: AgentConfig) -> AgentConfig:
    """``config`` with the camera, face and fingerprint off: the credential path alone."""
    return config.model_copy(
        update={
            "camera": config.camera.model_copy(update={"enabled": False}),
            "face": config.face.model_copy(update={"enabled": False}),
            "fingerprint": config.fingerprint.model_copy(update={"enabled": False}),
        }
    )


def reason_of(record: StartRecord) -> str:
    return f"start-up failed {record.failures} times: {record.signature}"


def build_safe(
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    build: Callable[[AgentConfig, Profile, StateDir], Wired],
    record: StartRecord,
) -> Wired:
    """The credential path in safe mode, announced (alarm, audit record, log)."""
    from edge.ops.degrade import FailClosedConsent

    reason = reason_of(record)
    try:
        wired = build(credential_only(config), profile, state)
    except Exception as exc:
        log.error("safe mode: the credential-only build failed too (%s); door and reader alone", signature(exc)[0])
        wired = minimal(config, profile, state)
    wired.consent = FailClosedConsent(wired.consent, reason)
    wired.camera = None
    wired.fingerprint = None
    log.critical("SAFE MODE (credential path only): %s; fix: %s", reason, record.hint or "see the log")
    try:
        wired.sink.emit(Alarm("safe_mode", "critical", "raised", "agent", count=record.failures))
    except Exception as exc:
        log.error("the safe_mode alarm could not be queued (%s)", exc.__class__.__name__)
    if wired.audit is not None:
        try:
            wired.audit("safe_mode", {"active": True, "reason": _note(reason), "attempts": record.failures})
        except Exception as exc:
            log.error("the safe_mode audit record could not be written (%s)", exc.__class__.__name__)
    return wired


def _note(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:200]


class _LogSink:
    """No signed event path (the device key or every store failed): events are logged, not sent."""

    def emit(self, event: object) -> None:
        log.warning("safe mode without an event path: %s not sent", getattr(event, "kind", "event"))


def minimal(config: AgentConfig, profile: Profile, state: StateDir) -> Wired:
    """The door and the card reader on the last consent list, read-only; nothing else."""
    from edge.agent.assembly import EmptyGallery, credential_factory
    from edge.agent.wired import Wired
    from edge.config.final import device_plan
    from edge.consent.ledger import ConsentLedger

    site, grace = config.device.site, config.consent.grace_period_s
    try:
        ledger = ConsentLedger.open_fallback(state, site, grace_period_s=grace, read_only=True)
    except Exception:
        ledger = ConsentLedger.open_fallback(state, site, grace_period_s=grace, read_only=False)
    return Wired(
        gallery=EmptyGallery(),
        consent=ledger,
        sink=_LogSink(),
        credentials=credential_factory(device_plan(credential_only(config), profile).credentials, state),
        closers=[ledger.close],
    )


def status_line(record: StartRecord) -> str:
    """The systemd STATUS= line in safe mode."""
    return f"SAFE MODE (credential path only): {_note(reason_of(record))}"


def start(
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    build: Callable[[AgentConfig, Profile, StateDir], Wired],
    run: Callable[[Wired, Callable[[], None], str | None, Callable[[], None]], int],
) -> int:
    """``edge run``'s start: ``run(wired, on_ready, safe_status, on_stop)`` runs the gate; a failure before
    READY is recorded, re-raised (systemd restarts) until it happened ``LIMIT`` times the same
    way, then the gate runs in safe mode instead."""
    attempts = StartAttempts(state)
    unclean = attempts.record.running  # the last run reached READY and never stopped in order
    attempts.record.running = False
    attempts.begin()
    attempts.record.safe_mode = False  # every start tries a normal one first
    if attempts.exhausted:  # the last start died the same way often enough (SIGKILL, native crash)
        return _run_safe(config, profile, state, build, run, attempts)
    ready = False

    def on_ready() -> None:
        nonlocal ready
        ready = True
        attempts.succeeded()

    try:
        wired = build(config, profile, state)
        if unclean:
            _unclean_stop(wired)
        return run(wired, on_ready, None, attempts.stopped)
    except Exception as exc:
        if ready:
            raise
        count = attempts.failed(exc)
        log.error("start-up failed (%d of %d the same way): %s", count, LIMIT, signature(exc)[0])
        if count < LIMIT:
            raise
        return _run_safe(config, profile, state, build, run, attempts)


def _run_safe(
    config: AgentConfig,
    profile: Profile,
    state: StateDir,
    build: Callable[[AgentConfig, Profile, StateDir], Wired],
    run: Callable[[Wired, Callable[[], None], str | None, Callable[[], None]], int],
    attempts: StartAttempts,
) -> int:
    attempts.entered_safe_mode()
    wired = build_safe(config, profile, state, build, attempts.record)
    return run(wired, attempts.succeeded, status_line(attempts.record), attempts.stopped)


def _unclean_stop(wired: Wired) -> None:
    """The last run ended without an orderly stop (SIGKILL, a crash, power loss): said once."""
    log.warning("the last run ended without an orderly stop (killed, crashed or powered off)")
    try:
        wired.sink.emit(Alarm("unclean_stop", "warning", component="agent"))
    except Exception as exc:
        log.error("the unclean_stop alarm could not be queued (%s)", exc.__class__.__name__)


def describe(state: StateDir) -> tuple[str, str] | None:
    """(what, fix) for ``edge status`` and selftest: safe mode, or failed starts; None when clean."""
    record = load(state)
    if record.safe_mode:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.safe_since))
        return (
            f"SAFE MODE since {when} (credential path only): {reason_of(record)}",
            (record.hint + "; then " if record.hint else "") + "restart the agent (systemctl restart gate-edge)",
        )
    if record.failures:
        return (
            f"the last {record.failures} start(s) failed the same way: {record.signature}",
            record.hint or "see journalctl -u gate-edge",
        )
    return None


class ReadyHook:
    """The notifier ``run_agent`` gets: READY also clears the start record (``on_ready``), and in
    safe mode the STATUS line says so."""

    def __init__(
        self,
        notifier: Notifier,
        on_ready: Callable[[], None],
        safe_status: str | None,
        on_stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.notifier = notifier
        self.on_ready = on_ready
        self.safe_status = safe_status
        self.on_stop = on_stop

    @property
    def watchdog_interval_s(self) -> float | None:
        return self.notifier.watchdog_interval_s

    def watchdog(self) -> bool:
        return self.notifier.watchdog()

    def ready(self, status: str = "") -> bool:
        sent = self.notifier.ready(self.safe_status or status)
        self.on_ready()
        return sent

    def status(self, text: str) -> bool:
        return self.notifier.status(self.safe_status or text)

    def stopping(self) -> bool:
        self.on_stop()
        return self.notifier.stopping()
