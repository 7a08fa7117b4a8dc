"""The library guide covers every public name, and its examples are valid Python."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "pachinko.md"
PUBLIC_MODULES = (
    "falcon_pachinko",
    "falcon_pachinko.backends",
    "falcon_pachinko.backends.nats",
    "falcon_pachinko.testing",
)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_is_in_the_guide(module: str) -> None:
    text = GUIDE.read_text()
    names = importlib.import_module(module).__all__
    missing = [name for name in names if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"{module} exports names docs/pachinko.md does not mention"


def test_the_guide_examples_parse() -> None:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert len(blocks) > 10
    for number, block in enumerate(blocks, 1):
        try:
            compile(block, f"pachinko.md example {number}", "exec", ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        except SyntaxError as exc:
            raise AssertionError(f"example {number} is not Python: {exc}\n{block}") from None
