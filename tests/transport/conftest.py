"""Fixtures for transport tests: the production broker (TLS, mTLS, passwords, ACL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.transport.broker_fixtures import ProductionBroker, start_production_broker


@pytest.fixture
def production_broker(tmp_path: Path) -> Iterator[ProductionBroker]:
    prod = start_production_broker(tmp_path)
    try:
        yield prod
    finally:
        prod.broker.stop()
