"""Local Prometheus metrics on 127.0.0.1 only: counts and states, never subjects or biometrics."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from edge.errors import ConfigError, ConfigProblem, TransportError

log = logging.getLogger(__name__)


class Metrics:
    """The agent's metrics in their own registry (so tests and the demo never collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "gate_access_decisions",
            "Access decisions by modality and outcome",
            ["modality", "outcome"],
            registry=self.registry,
        )
        self.device_up = Gauge(
            "gate_device_up", "1 while a device works, 0 while it is failed", ["device"], registry=self.registry
        )
        self.alarms = Counter("gate_alarms", "Alarm events raised", ["alarm"], registry=self.registry)
        self.attacks = Counter(
            "gate_presentation_attacks", "Faces refused as presentation attacks", registry=self.registry
        )
        self.door_pulses = Counter("gate_door_pulses", "Door releases", registry=self.registry)
        self.sink_errors = Counter("gate_event_sink_errors", "Events the sink refused", registry=self.registry)
        self.loop_seconds = Histogram(
            "gate_loop_iteration_seconds",
            "Time the gate thread spends per work item",
            buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self._server: Any = None
        self._thread: Any = None

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))

    def serve(self, bind: str = "127.0.0.1", port: int = 9108) -> int:
        """Serve /metrics on a loopback address; return the port (0 picks a free one)."""
        try:
            loopback = ipaddress.ip_address(bind).is_loopback
        except ValueError:
            loopback = bind == "localhost"
        if not loopback:
            raise ConfigError(
                "config",
                [ConfigProblem("config", "metrics.bind", "a loopback address (127.0.0.1 or ::1)", repr(bind))],
            )
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(port, addr=bind, registry=self.registry)
        except OSError as exc:
            raise TransportError(
                f"cannot serve metrics on {bind}:{port}: {exc.strerror or exc}",
                hint="another process holds the port: set metrics.port, or metrics.enabled = false",
            ) from None
        self._thread.name = "metrics-http"
        actual = int(self._server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", bind, actual)
        return actual

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
