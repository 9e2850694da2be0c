"""The registry of device public keys a site trusts (a small JSON file).

::

    {"version": 1,
     "devices": {"gw-0123456789abcdef": {"site": "hq", "public_key": "<64 hex characters>",
                                         "box_key": "<64 hex characters>", "zones": ["lobby"]}}}

``box_key`` (optional) is the gate's X25519 key for sealed template parcels (``edge.sync``): a
gate without one cannot receive templates enrolled elsewhere, and is enrolled locally as before.
``zones`` (optional) are the site zones the gate stands in; the consent authority carries them,
with the keys, in the signed list's gate roster (``edge-site consent issue --registry``).

A device id is derived from its public key (``edge.crypto.keys.device_id``), so an entry whose id
does not match its key is refused: a copied id cannot be paired with another key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nacl.public import PublicKey
from nacl.signing import VerifyKey

from edge.consent.listformat import Gate, Passback, valid_zone
from edge.crypto.keys import device_id as derive_device_id
from edge.crypto.keys import key_id
from edge.errors import StorageError
from edge.transport.topics import LEVEL

REGISTRY_VERSION = 1


@dataclass(frozen=True)
class Device:
    device_id: str
    site: str
    public_key: VerifyKey
    box_key: PublicKey | None = None
    zones: frozenset[str] = frozenset()
    passback: Passback | None = None

    @property
    def kid(self) -> bytes:
        return key_id(self.public_key)


class Registry:
    def __init__(self, devices: dict[str, Device] | None = None) -> None:
        self.devices: dict[str, Device] = dict(devices or {})

    def add(
        self,
        site: str,
        public_key: VerifyKey | bytes,
        box_key: PublicKey | bytes | None = None,
        zones: Iterable[str] = (),
        passback: Passback | None = None,
    ) -> Device:
        key = public_key if isinstance(public_key, VerifyKey) else VerifyKey(bytes(public_key))
        box = box_key if isinstance(box_key, PublicKey) or box_key is None else PublicKey(bytes(box_key))
        names = frozenset(zones)
        bad = sorted(z for z in names if not valid_zone(z))
        if bad:
            raise StorageError(
                f"{bad[0][:40]!r} is not a zone name", hint="lower case letters, digits, '.', '_' or '-'; at most 32"
            )
        if passback is not None and (not valid_zone(passback.area) or passback.direction not in ("in", "out")):
            raise StorageError("anti-passback needs an area name and a direction in or out")
        device = Device(
            device_id=derive_device_id(key), site=site, public_key=key, box_key=box, zones=names, passback=passback
        )
        self.devices[device.device_id] = device
        return device

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def site_gates(self, site: str) -> dict[str, Device]:
        """The registered gates of ``site``, by device id."""
        return {d.device_id: d for d in self.devices.values() if d.site == site}

    def roster(self, site: str) -> list[Gate]:
        """``site``'s gates as the signed consent list carries them."""
        return [
            Gate(
                d.device_id,
                bytes(d.public_key),
                bytes(d.box_key) if d.box_key is not None else None,
                d.zones,
                d.passback,
            )
            for d in sorted(self.site_gates(site).values(), key=lambda d: d.device_id)
        ]

    def to_json(self) -> str:
        def entry(d: Device) -> dict[str, object]:
            out: dict[str, object] = {"site": d.site, "public_key": bytes(d.public_key).hex()}
            if d.box_key is not None:
                out["box_key"] = bytes(d.box_key).hex()
            if d.zones:
                out["zones"] = sorted(d.zones)
            if d.passback is not None:
                out["passback"] = {"area": d.passback.area, "direction": d.passback.direction}
            return out

        devices = {d.device_id: entry(d) for d in sorted(self.devices.values(), key=lambda d: d.device_id)}
        return json.dumps({"version": REGISTRY_VERSION, "devices": devices}, indent=2) + "\n"

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise StorageError(f"device registry {path} is missing") from None
        except (OSError, ValueError) as exc:
            raise StorageError(f"device registry {path} is not readable ({exc.__class__.__name__})") from None
        return cls.loads(text, str(path))

    @classmethod
    def loads(cls, text: str, name: str = "(text)") -> Registry:
        """Parse a registry document; raises ``StorageError`` naming the entry, never anything else."""
        path = name
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise StorageError(f"device registry {path} is not readable JSON ({exc.__class__.__name__})") from None
        if (
            not isinstance(data, dict)
            or data.get("version") != REGISTRY_VERSION
            or not isinstance(data.get("devices"), dict)
        ):
            raise StorageError(f"device registry {path}: expected {{'version': 1, 'devices': {{...}}}}")
        registry = cls()
        for dev_id, entry in data["devices"].items():
            where = f"device registry {path}: devices.{dev_id}"
            if not isinstance(entry, dict) or not isinstance(entry.get("site"), str):
                raise StorageError(f"{where}: expected {{'site': ..., 'public_key': ...}}")
            if not LEVEL.fullmatch(entry["site"]):
                raise StorageError(f"{where}: site is not a site id (letters, digits, _ . -; at most 64)")
            key_text = entry.get("public_key", "")
            try:
                if not isinstance(key_text, str):
                    raise ValueError("not text")
                raw = bytes.fromhex(key_text)
            except ValueError:
                raise StorageError(f"{where}: public_key is not hex") from None
            if len(raw) != 32:
                raise StorageError(f"{where}: public_key must be 32 bytes (64 hex characters)")
            box: bytes | None = None
            if "box_key" in entry:
                box_text = entry["box_key"]
                try:
                    if not isinstance(box_text, str):
                        raise ValueError("not text")
                    box = bytes.fromhex(box_text)
                except ValueError:
                    raise StorageError(f"{where}: box_key is not hex") from None
                if len(box) != 32:
                    raise StorageError(f"{where}: box_key must be 32 bytes (64 hex characters)")
            unknown = set(entry) - {"site", "public_key", "box_key", "zones", "passback"}
            if unknown:
                raise StorageError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
            zones = entry.get("zones", [])
            if not isinstance(zones, list) or not all(isinstance(z, str) and valid_zone(z) for z in zones):
                raise StorageError(f"{where}: zones must be a list of zone names (lower case, e.g. lobby)")
            passback: Passback | None = None
            if "passback" in entry:
                pb = entry["passback"]
                if (
                    not isinstance(pb, dict)
                    or set(pb) != {"area", "direction"}
                    or not isinstance(pb["area"], str)
                    or pb["direction"] not in ("in", "out")
                ):
                    raise StorageError(f"{where}: passback must be {{'area': ..., 'direction': 'in' or 'out'}}")
                passback = Passback(pb["area"], pb["direction"])
            device = registry.add(entry["site"], raw, box, zones, passback)
            if device.device_id != dev_id:
                raise StorageError(
                    f"{where}: this id does not belong to its public key (the key's id is {device.device_id})",
                    hint="re-export the entry from the device with `edge-provision` rather than editing it",
                )
        return registry
