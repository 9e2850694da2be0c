"""Fixtures for consent tests (helpers live in consent_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.consent.authority import Authority
from tests.consent.consent_helpers import Device, make_authority, make_device


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path)


@pytest.fixture
def device(tmp_path: Path, authority: Authority) -> Iterator[Device]:
    yield from make_device(tmp_path, authority)
