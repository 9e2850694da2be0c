"""Consent lists larger than one MQTT packet: a signed manifest and chunks named by hash. Pure.

The shipped broker refuses packets over ``max_packet_size`` (1 MiB); a 10k-subject list with
cards is 1.8 MB, a 100k one 18 MB. So a large list travels as:

- the **list itself, signed as a whole** (the ordinary COSE_Sign1 list message, unchanged), cut
  into chunks of at most ``chunk_size`` bytes, each published retained on
  ``sites/{site}/consent/chunks/{sha256 of the chunk, hex}``;
- a **manifest** published retained on ``sites/{site}/consent`` in place of the list: a
  COSE_Sign1 by the same authority key (external AAD ``gate-edge/consent-manifest``, content type
  ``application/gate-edge-consent-manifest+cbor``) over ``{format: 1, site, version,
  list_sha256, list_size, chunks: [sha256, ...]}``.

A device verifies the manifest, keeps the chunks whose hash the manifest names, joins them when all
are there, checks size and SHA-256 against the manifest, and hands the joined bytes to the ledger,
which verifies the list's own signature as for any list: the manifest and the chunk names only
decide what to wait for and what to drop early; the list's signature decides what applies.

A small list still travels as one message on ``sites/{site}/consent`` (what older terminals read).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import cbor2
from nacl.signing import SigningKey, VerifyKey

from edge.consent.listformat import valid_site
from edge.consent.signing import MAX_VERSION, ListRejected
from edge.crypto import strictcbor
from edge.crypto.cose import CoseError, peek_payload, peek_protected, sign1, verify1
from edge.crypto.keys import key_id
from edge.errors import IntegrityError
from edge.transport import topics

log = logging.getLogger(__name__)

MANIFEST_AAD = b"gate-edge/consent-manifest"
MANIFEST_CONTENT_TYPE = "application/gate-edge-consent-manifest+cbor"
FORMAT = 1
#: The default chunk size: half the shipped broker's 1 MiB packet limit.
CHUNK_SIZE = 512 * 1024
#: The largest list a device reassembles (the strict COSE profile's limit too).
MAX_LIST_BYTES = strictcbor.COSE.max_size
MAX_CHUNKS = 4096
#: A list at most this large is published as one message (older terminals read only that form).
SINGLE_MESSAGE_MAX = 512 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")


class ManifestError(IntegrityError):
    """A manifest body is malformed. ``reason`` is short."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"consent list manifest rejected: {reason}")


def chunks_filter(site: str) -> str:
    """The subscription filter for a site's chunk topics."""
    return topics.consent_chunks(site) + "+"


def chunk_topic(site: str, digest: bytes) -> str:
    return topics.consent_chunk(site, digest)


@dataclass(frozen=True)
class Manifest:
    site: str
    version: int
    list_sha256: bytes
    list_size: int
    chunks: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"Manifest(site={self.site!r}, version={self.version}, size={self.list_size}, chunks={len(self.chunks)})"


def split(message: bytes, site: str, version: int, chunk_size: int = CHUNK_SIZE) -> tuple[Manifest, list[bytes]]:
    """The manifest and the chunks of a signed list ``message``."""
    if chunk_size < 1024:
        raise ValueError("chunk_size must be at least 1024 bytes")
    parts = [bytes(message[i : i + chunk_size]) for i in range(0, len(message), chunk_size)]
    if len(parts) > MAX_CHUNKS or len(message) > MAX_LIST_BYTES:
        raise ManifestError(f"a list of {len(message)} bytes is over the {MAX_LIST_BYTES} bytes a device takes")
    manifest = Manifest(
        site,
        version,
        hashlib.sha256(message).digest(),
        len(message),
        tuple(hashlib.sha256(p).digest() for p in parts),
    )
    return manifest, parts


def encode_manifest(manifest: Manifest) -> bytes:
    body = {
        "format": FORMAT,
        "site": manifest.site,
        "version": manifest.version,
        "list_sha256": manifest.list_sha256,
        "list_size": manifest.list_size,
        "chunks": list(manifest.chunks),
    }
    data = bytes(cbor2.dumps(body, canonical=True))
    decode_manifest(data)
    return data


def decode_manifest(data: bytes) -> Manifest:
    """Parse a manifest body; raises ``ManifestError`` and nothing else."""
    try:
        raw = strictcbor.loads(data, strictcbor.MANIFEST)
    except strictcbor.CborProfileError as exc:
        raise ManifestError(f"not CBOR (strict profile: {exc.reason})") from None
    keys = {"format", "site", "version", "list_sha256", "list_size", "chunks"}
    if not isinstance(raw, dict) or set(raw) != keys:
        raise ManifestError(f"expected exactly the keys {', '.join(sorted(keys))}")
    if raw["format"] != FORMAT or isinstance(raw["format"], bool):
        raise ManifestError("unsupported manifest format")
    site, version, digest, size, chunks = (raw[k] for k in ("site", "version", "list_sha256", "list_size", "chunks"))
    if not isinstance(site, str) or not valid_site(site):
        raise ManifestError("site is not a valid site id")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise ManifestError("version is out of range")
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise ManifestError("list_sha256 is not 32 bytes")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_LIST_BYTES:
        raise ManifestError(f"list_size is not 1..{MAX_LIST_BYTES}")
    if not isinstance(chunks, list) or not 1 <= len(chunks) <= MAX_CHUNKS:
        raise ManifestError(f"chunks is not a list of 1..{MAX_CHUNKS} digests")
    if not all(isinstance(c, bytes) and len(c) == 32 for c in chunks):
        raise ManifestError("a chunk digest is not 32 bytes")
    return Manifest(site, version, digest, size, tuple(chunks))


def sign_manifest(key: SigningKey, manifest: Manifest) -> bytes:
    return sign1(
        key, key_id(key.verify_key), encode_manifest(manifest), MANIFEST_AAD, content_type=MANIFEST_CONTENT_TYPE
    )


def is_manifest(message: bytes) -> bool:
    """Whether ``message`` says it is a manifest (its protected content type); not verified."""
    try:
        protected = peek_protected(message)
    except CoseError:
        return False
    return protected.get(3) == MANIFEST_CONTENT_TYPE


def verify_manifest(message: bytes, keys: dict[bytes, VerifyKey]) -> Manifest:
    """The verified manifest; raises ``ListRejected`` (with the list reasons) otherwise."""
    try:
        signed = verify1(message, keys, MANIFEST_AAD)
    except CoseError as exc:
        if exc.reason.startswith("unknown key id"):
            raise ListRejected("unknown-key", "manifest signed by a key that is not pinned on this device") from None
        if exc.reason == "bad signature":
            raise ListRejected("bad-signature", "the manifest's signature does not verify") from None
        raise ListRejected("malformed", f"manifest: {exc.reason}") from None
    if signed.protected.get(3) != MANIFEST_CONTENT_TYPE:
        raise ListRejected("malformed-body", "the signed message is not a list manifest")
    try:
        return decode_manifest(signed.payload)
    except ManifestError as exc:
        raise ListRejected("malformed-body", exc.reason) from None


def peek_manifest(message: bytes) -> Manifest | None:
    """The manifest in ``message`` without checking its signature (the authority's own tools)."""
    try:
        protected, payload = peek_payload(message)
        if protected.get(3) != MANIFEST_CONTENT_TYPE:
            return None
        return decode_manifest(payload)
    except (CoseError, ManifestError):
        return None


class Reassembler:
    """Turns what arrives on a site's consent topics into whole list messages. Not thread-safe.

    ``offer(topic, payload)`` returns the list message to apply, or None while waiting. A plain
    list on the consent topic is returned as it is; a manifest that verifies makes the reassembler
    wait for its chunks; one that does not verify is returned as it is, so the ledger refuses and
    audits it with the same reason it would give a list. Chunks whose bytes do not hash to their
    topic's name are dropped; chunks that arrive before their manifest are kept, up to
    ``max_pending`` bytes, oldest dropped first.
    """

    def __init__(
        self, site: str, keys: Callable[[], dict[bytes, VerifyKey]] | None, *, max_pending: int = MAX_LIST_BYTES
    ) -> None:
        self.site = site
        self._list_topic = topics.consent(site)
        self.keys = keys
        self.max_pending = max_pending
        self.manifest: Manifest | None = None
        self._chunks: OrderedDict[bytes, bytes] = OrderedDict()
        self._held = 0
        self.dropped = 0

    def offer(self, topic: str, payload: bytes) -> bytes | None:
        if not payload:
            return None  # a cleared retained topic
        if topic == self._list_topic:
            if not is_manifest(payload):
                return bytes(payload)
            if self.keys is None:
                manifest = peek_manifest(payload)
                if manifest is None:
                    return bytes(payload)
            else:
                try:
                    manifest = verify_manifest(payload, self.keys())
                except ListRejected as exc:
                    log.warning("consent list manifest rejected: %s", exc.reason)
                    return bytes(payload)  # the ledger refuses it again, with this reason, and audits it
            if manifest.site != self.site:
                return bytes(payload)  # the ledger names it: a manifest is no list (malformed-body)
            self.manifest = manifest
            self._trim()
            log.info("consent list manifest for version %s: %s chunks", manifest.version, len(manifest.chunks))
            return self._complete()
        prefix = topics.consent_chunks(self.site)
        if not topic.startswith(prefix):
            return None
        name = topic[len(prefix) :]
        if not _HEX64.fullmatch(name) or hashlib.sha256(payload).hexdigest() != name:
            self.dropped += 1
            log.warning("dropped a consent list chunk whose bytes do not match its topic's hash")
            return None
        digest = bytes.fromhex(name)
        if digest not in self._chunks:
            self._chunks[digest] = bytes(payload)
            self._held += len(payload)
            self._trim()
        return self._complete()

    def _wanted(self, digest: bytes) -> bool:
        return self.manifest is not None and digest in self.manifest.chunks

    def _trim(self) -> None:
        """Drop chunks the manifest does not name, oldest first, while over the bound."""
        for digest in list(self._chunks):
            if self._held <= self.max_pending:
                break
            if not self._wanted(digest):
                self._held -= len(self._chunks.pop(digest))
                self.dropped += 1

    def _complete(self) -> bytes | None:
        manifest = self.manifest
        if manifest is None or not all(d in self._chunks for d in manifest.chunks):
            return None
        message = b"".join(self._chunks[d] for d in manifest.chunks)
        for digest in manifest.chunks:
            chunk = self._chunks.pop(digest, None)
            if chunk is not None:
                self._held -= len(chunk)
        self.manifest = None
        if len(message) != manifest.list_size or hashlib.sha256(message).digest() != manifest.list_sha256:
            log.warning("consent list chunks do not join into the list their manifest names")
        return message  # the list's own signature decides (the ledger)
