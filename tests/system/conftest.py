"""System tests: several real processes against a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .cluster import Cluster, cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/system/" in str(item.path):
            item.add_marker(pytest.mark.system)
            item.add_marker(pytest.mark.slow)


@pytest_asyncio.fixture
async def chat(tmp_path: Path) -> AsyncIterator[Cluster]:
    """A nats-server; start services with ``await chat.rooms()``, ``chat.gateway()``..."""
    async with cluster(tmp_path) as running:
        yield running
