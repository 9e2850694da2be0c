"""The ``consent`` thread: applies lists from the retained topic (or any caller) and ticks the enforcer.

The MQTT callback only queues the bytes (``submit``), so a large list never stalls the publisher's
loop; this thread verifies and applies them through the enforcer's one lock, emits
``consent_applied`` / ``consent_rejected``, and calls ``Enforcer.tick`` about once a second (lists
applied by another process, expiries, staleness, the deletion journal). ``hooks`` is more work for
this thread on each tick, in order (site sync's incoming parcels, ``edge.sync.wiring.attach``), and
``wake`` runs it now instead of at the next tick.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from edge.consent.enforce import Enforcer
from edge.consent.signing import ListRejected
from edge.events.fields import as_code
from edge.events.kinds import AnyEvent, ConsentApplied, ConsentRejected
from edge.events.sink import EventSink

log = logging.getLogger(__name__)

#: What ``wake`` queues: not a list, a request to run the hooks now.
_WAKE = b""


class ConsentService:
    """Applies consent lists and ticks the enforcer, on one thread (``start``/``stop``).

    ``clock``: wall seconds (consent validity); ``mono``: monotonic seconds (when to tick next).
    """

    def __init__(
        self,
        enforcer: Enforcer,
        sink: EventSink,
        *,
        tick_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enforcer = enforcer
        self.sink = sink
        self.tick_s = tick_s
        self.clock = clock
        self.mono = mono
        #: more work for this thread on each tick and on ``wake`` (site sync's parcels), in order
        self.hooks: list[Callable[[float], object]] = []
        self.applied = 0
        self.rejected = 0
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, payload: bytes) -> None:
        """Queue a whole list message (from ``ConsentReceiver`` on the MQTT thread); never blocks.
        An empty payload (a cleared retained topic) is not a list and is dropped."""
        if payload:
            self._queue.put(bytes(payload))

    def wake(self) -> None:
        """Run the hooks now (a site-sync parcel arrived): no waiting for the next tick."""
        self._queue.put(_WAKE)

    def apply(self, payload: bytes) -> None:
        """Verify and apply one list now, on the caller's thread; the outcome is an event."""
        try:
            outcome = self.enforcer.apply(payload, self.clock())
        except ListRejected as exc:
            self.rejected += 1
            log.warning("consent list rejected: %s", exc.reason)
            self._emit(ConsentRejected(None, as_code(exc.reason)))
            return
        if outcome.changed:
            self.applied += 1
            info = self.enforcer.ledger.info
            log.info("consent list version %s applied (%s)", outcome.version, outcome.kind)
            issued = int(info.issued_at) if info is not None else None
            self._emit(ConsentApplied(int(outcome.version), len(self.enforcer.ledger.entries()), issued))

    def _emit(self, event: AnyEvent) -> None:
        try:
            self.sink.emit(event)
        except Exception as exc:
            log.error("event sink refused a %s event: %s", event.kind, exc.__class__.__name__)

    def _run_hooks(self) -> None:
        for hook in self.hooks:
            if self._stop.is_set():
                return
            hook(self.clock())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="consent", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                payload: bytes | None = self._queue.get(timeout=max(0.0, min(self.tick_s, next_tick - self.mono())))
            except queue.Empty:
                payload = None
            try:
                if payload == _WAKE:
                    self._run_hooks()
                elif payload is not None:
                    self.apply(payload)
                if self.mono() >= next_tick:
                    next_tick = self.mono() + self.tick_s
                    self.enforcer.tick(self.clock())
                    self._run_hooks()
            except Exception:
                log.exception("consent service error; continuing")

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(_WAKE)  # out of its wait now, not at the next tick
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None
