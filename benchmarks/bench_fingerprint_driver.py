"""Driver time per command beside the wire time at 57600 baud, with the simulator emulating byte timing.

    python benchmarks/bench_fingerprint_driver.py [--rounds 5] [--model r307]

edge-fpsim runs as a separate process with --byte-timing, so replies arrive at the pace of a real
57600-baud line. For each command the table shows: wall time per call, wire time of the bytes
actually exchanged (10 bits per byte), and the driver's own CPU time in this process (encoding,
parsing, Python overhead; the simulator's work happens in the other process). Overhead = driver CPU
time / wire time. The named peer, pyfingerprint 1.5, runs the same commands in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from edge.fingerprint import protocol as p
from edge.fingerprint.driver import FingerprintDriver
from edge.fingerprint.sim.process import SimulatorProcess

BAUD = 57600


class Counting:
    """Wraps a pyserial port and counts the bytes written and read."""

    def __init__(self, port: Any) -> None:
        self.__dict__["_port"] = port
        self.__dict__["count"] = 0

    def write(self, data: Any) -> Any:
        self.__dict__["count"] += len(data)
        return self._port.write(data)

    def read(self, n: int = 1) -> bytes:
        data = self._port.read(n)
        self.__dict__["count"] += len(data)
        return bytes(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._port, name, value)


def measure(fn: Callable[[], object], counter: Counting, rounds: int) -> tuple[float, float, float]:
    walls, cpus, wires = [], [], []
    for _ in range(rounds):
        counter.__dict__["count"] = 0
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        wires.append(p.wire_seconds(counter.count, BAUD))
    return statistics.median(walls), statistics.median(cpus), statistics.median(wires)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--model", default="r307", choices=["r307", "r503"])
    args = ap.parse_args()
    rows: list[tuple[str, str, float, float, float]] = []
    with SimulatorProcess(model=args.model, finger_always=True, byte_timing=True) as sim:
        drv = FingerprintDriver.open(sim.port, timeout_s=5.0)
        counter = Counting(drv._port)
        drv._port = counter
        size = 512 if args.model == "r307" else 1536
        drv.empty()
        assert drv.capture()
        assert drv.image2tz(1) == 0
        for slot in range(5):
            drv.store(slot, 1)
        template = drv.read_template(1, expected=size)
        ours: dict[str, Callable[[], object]] = {
            "ReadSysPara": drv.read_system_parameters,
            "TemplateNum": drv.template_count,
            "GenImg": drv.capture,
            "Img2Tz": lambda: drv.image2tz(1),
            "Search": lambda: drv.search(1),
            "Store": lambda: drv.store(10, 1),
            "UpChar": lambda: drv.read_template(1, expected=size),
            "DownChar": lambda: drv.write_template(template, 2),
        }
        for name, fn in ours.items():
            rows.append(("edge driver", name, *measure(fn, counter, args.rounds)))
        drv.close()

        from pyfingerprint.pyfingerprint import PyFingerprint

        peer = PyFingerprint(sim.port, BAUD, 0xFFFFFFFF, 0)
        raw = peer._PyFingerprint__serial
        pcount = Counting(raw)
        peer._PyFingerprint__serial = pcount
        theirs: dict[str, Callable[[], object]] = {
            "ReadSysPara": peer.getSystemParameters,
            "TemplateNum": peer.getTemplateCount,
            "GenImg": peer.readImage,
            "Img2Tz": lambda: peer.convertImage(1),
            "Search": peer.searchTemplate,
            "Store": lambda: peer.storeTemplate(10, 1),
            "UpChar": lambda: peer.downloadCharacteristics(1),
        }
        for name, fn in theirs.items():
            rows.append(("pyfingerprint 1.5", name, *measure(fn, pcount, args.rounds)))
        raw.close()

    print(f"model {args.model}, {BAUD} baud, simulator with --byte-timing, median of {args.rounds} calls")
    print(f"{'driver':18s} {'command':12s} {'wall ms':>9s} {'wire ms':>9s} {'driver CPU ms':>14s} {'CPU/wire':>9s}")
    for who, name, wall, cpu, wire in rows:
        print(f"{who:18s} {name:12s} {wall * 1e3:9.2f} {wire * 1e3:9.2f} {cpu * 1e3:14.3f} {cpu / wire * 100:8.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
