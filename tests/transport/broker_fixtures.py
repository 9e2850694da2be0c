"""The production broker for tests: docs/mosquitto/gate-edge.conf as it is, and the ACL that
`edge-site broker-acl` writes for the test registry (docs/mosquitto/acl plus one block per device).

Devices a, b (certificates) and c (password) are on site ``hq``; device d (certificate) is on site
``other``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from edge.crypto.keys import device_id
from edge.site.acl import render_acl
from edge.site.registry import Registry
from edge.testing.mosquitto import DOCS_MOSQUITTO, Mosquitto, free_port, make_pki, production_config, write_passwords
from edge.transport.mqtt import MqttSettings

PASSWORDS = {"site-verifier": "verifier-secret", "site-authority": "authority-secret"}


@dataclass
class ProductionBroker:
    broker: Mosquitto
    mtls_port: int
    password_port: int
    pki: dict[str, Path]
    keys: dict[str, SigningKey]  # name ("a", "b", "c", "d") -> device key
    ids: dict[str, str]  # name -> device id
    passwords: dict[str, str]

    def device_settings(self, name: str, **kwargs: object) -> MqttSettings:
        """mTLS settings for device ``name`` (its certificate CN is its device id)."""
        dev = self.ids[name]
        return MqttSettings.from_url(
            f"mqtts://127.0.0.1:{self.mtls_port}",
            ca_file=self.pki["ca"],
            cert_file=self.pki[f"{dev}.cert"],
            key_file=self.pki[f"{dev}.key"],
            **kwargs,
        )

    def password_settings(self, user: str, password: str | None = None, **kwargs: object) -> MqttSettings:
        return MqttSettings.from_url(
            f"mqtts://127.0.0.1:{self.password_port}",
            ca_file=self.pki["ca"],
            username=user,
            password=password if password is not None else self.passwords[user],
            **kwargs,
        )


def start_production_broker(workdir: Path) -> ProductionBroker:
    keys = {name: SigningKey.generate() for name in ("a", "b", "c", "d")}
    ids = {name: device_id(k.verify_key) for name, k in keys.items()}
    etc = workdir / "etc"
    pki = make_pki(etc, [ids["a"], ids["b"], ids["d"]])  # device c has no certificate: it uses a password
    registry = Registry()
    for name in ("a", "b", "c"):
        registry.add("hq", keys[name].verify_key)
    registry.add("other", keys["d"].verify_key)
    acl = render_acl(registry)
    assert acl.startswith((DOCS_MOSQUITTO / "acl").read_text())  # the shipped file is the static part
    (etc / "acl").write_text(acl)
    passwords = {**PASSWORDS, ids["c"]: "device-c-secret"}
    write_passwords(etc / "passwd", passwords)
    mtls_port = free_port()
    while (password_port := free_port()) == mtls_port:
        pass
    config = production_config(mtls_port, password_port, etc, workdir / "data")
    broker = Mosquitto(workdir / "broker", port=mtls_port, config_text=config)
    broker.start()
    return ProductionBroker(broker, mtls_port, password_port, pki, keys, ids, passwords)
