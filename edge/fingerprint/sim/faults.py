"""Fault injection for the simulator: parse specs, then mangle outgoing replies. Pure apart from ``random``."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

FAULT_HELP = (
    "noise:P (garbage bytes before a reply with probability P), corrupt:P (flip a reply byte), "
    "drop:P (drop a reply byte), delay:SECONDS, split (write replies in small pieces), silent "
    "(never answer), unplug-after:N (close the pty after N replies), baud:RATE (the module listens "
    "at RATE whatever the host set)"
)


class FaultSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Faults:
    noise: float = 0.0
    corrupt: float = 0.0
    drop: float = 0.0
    delay_s: float = 0.0
    split: bool = False
    silent: bool = False
    unplug_after: int | None = None
    baud: int | None = None

    def with_spec(self, spec: str) -> Faults:
        name, _, value = spec.strip().partition(":")
        try:
            if name in ("noise", "corrupt", "drop"):
                prob = float(value)
                if not 0.0 <= prob <= 1.0:
                    raise FaultSpecError(f"{name} probability must be within 0..1, got {value}")
                if name == "noise":
                    return replace(self, noise=prob)
                if name == "corrupt":
                    return replace(self, corrupt=prob)
                return replace(self, drop=prob)
            if name == "delay":
                return replace(self, delay_s=max(0.0, float(value)))
            if name == "split":
                return replace(self, split=True)
            if name == "silent":
                return replace(self, silent=True)
            if name == "unplug-after":
                return replace(self, unplug_after=int(value))
            if name == "baud":
                return replace(self, baud=int(value))
        except ValueError as exc:
            if isinstance(exc, FaultSpecError):
                raise
            raise FaultSpecError(f"fault {spec!r}: bad value {value!r}") from exc
        raise FaultSpecError(f"unknown fault {spec!r}; known: {FAULT_HELP}")

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        faults = cls()
        for spec in specs:
            faults = faults.with_spec(spec)
        return faults


def mangle(reply: bytes, faults: Faults, rng: random.Random) -> bytes:
    """Apply noise, corruption and drops to one reply."""
    if not reply:
        return reply
    out = bytearray(reply)
    if faults.corrupt and rng.random() < faults.corrupt:
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    if faults.drop and rng.random() < faults.drop:
        del out[rng.randrange(len(out))]
    if faults.noise and rng.random() < faults.noise:
        # Noise never contains a header byte pair, like line noise on an idle UART.
        junk = bytes(rng.choice([0x00, 0xFF, 0x80, 0x55, 0x3F, 0x7E]) for _ in range(rng.randint(1, 8)))
        out[:0] = junk
    return bytes(out)


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    """Split data into random small pieces (1..7 bytes)."""
    out = []
    i = 0
    while i < len(data):
        n = rng.randint(1, 7)
        out.append(data[i : i + n])
        i += n
    return out
