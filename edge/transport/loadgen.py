"""A producing agent for outage tests and the soak benchmark: emits numbered health events.

``python -m edge.transport.loadgen --state DIR --site S --broker URL --total N`` loads (or creates)
the identity key in DIR, emits health events through the real ``OutboxSink`` at ``--rate`` per
second until the outbox's sequence number reaches N, waits until the publisher has drained the
outbox, and exits 0. Killed at any point (SIGKILL included) and started again, it continues from
the persisted sequence number; nothing already committed is lost or renumbered.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edge.crypto.keys import device_id as derive_device_id
from edge.crypto.keys import generate_signing_key, load_signing_key
from edge.events.envelope import EventSigner
from edge.events.kinds import Health
from edge.events.outbox_sink import OutboxSink
from edge.state import StateDir
from edge.transport.mqtt import Backoff, MqttPublisher, MqttSettings
from edge.transport.outbox import Outbox

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edge.transport.loadgen", description=__doc__)
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--ca", type=Path)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    parser.add_argument("--total", type=int, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="events per second")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--backoff-cap", type=float, default=2.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="loadgen %(levelname)s %(name)s: %(message)s")

    state = StateDir(args.state)
    state.ensure()
    key = (
        load_signing_key(state.identity_key)
        if state.identity_key.exists()
        else generate_signing_key(state.identity_key)
    )
    dev = derive_device_id(key.verify_key)
    outbox = Outbox(state.outbox_db)
    sink = OutboxSink(EventSigner(key, dev, outbox), outbox, args.site)
    settings = MqttSettings.from_url(args.broker, ca_file=args.ca, cert_file=args.cert, key_file=args.key)
    publisher = MqttPublisher(
        settings, outbox, site=args.site, device_id=dev, backoff=Backoff(base_s=0.1, cap_s=args.backoff_cap)
    )
    stopping = False

    def on_term(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    publisher.start()
    started = time.monotonic()
    try:
        interval = 1.0 / args.rate
        next_at = time.monotonic()
        while not stopping and outbox.last_seq() < args.total:
            # The body carries the number this event will get, so a test can check seq and body agree.
            sink.emit(Health(uptime_s=int(time.monotonic() - started), outbox_depth=outbox.depth()))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        drained = publisher.wait_drained(args.drain_timeout) if not stopping else False
    finally:
        publisher.stop()
        outbox.close()
    print(f"loadgen: device {dev} last seq {args.total} drained={drained}", file=sys.stderr)  # noqa: T201
    return 0 if drained else 1


if __name__ == "__main__":
    raise SystemExit(main())
