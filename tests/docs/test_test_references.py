"""Every test a document names exists: the security and architecture tables stay true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["docs/security.md", "docs/architecture.md"]

# `path/to/test_x.py::test_name` (a `::name` after it reuses the same file), or a path alone.
_CELL = re.compile(r"`([\w./-]+\.py)?(::\w+)?`")


def references(document: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for line in (ROOT / document).read_text().splitlines():
        if not line.startswith("|"):
            continue
        current: str | None = None
        for path, name in _CELL.findall(line):
            if path:
                current = path
            if current is None or not current.split("/")[-1].startswith("test_"):
                continue
            found.append((current, name[2:] if name else None))
    return found


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^(async )?def {name}\b|^{name} = ", source, re.MULTILINE) is not None


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_named_test_exists(document: str) -> None:
    missing = []
    for path, name in references(document):
        file = ROOT / path
        if not file.exists():
            missing.append(path)
        elif name is not None and not _defines(file.read_text(), name):
            missing.append(f"{path}::{name}")
    assert missing == [], f"{document} names tests that do not exist"
    assert references(document), f"{document} names no test at all"
