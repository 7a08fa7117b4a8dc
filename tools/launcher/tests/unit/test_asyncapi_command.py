"""``chat asyncapi`` writes the generated document, to stdout or a file."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from chat_launcher.asyncapi import render
from chat_launcher.cli import main


@pytest.fixture(scope="module")
def expected() -> str:
    return render()


def test_it_writes_the_document_to_stdout(expected: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert main(["asyncapi"], {}, out, err) == 0
    assert out.getvalue() == expected and err.getvalue() == ""


def test_it_writes_the_document_to_a_file(tmp_path: Path, expected: str) -> None:
    target = tmp_path / "asyncapi.yaml"
    out, err = io.StringIO(), io.StringIO()
    assert main(["asyncapi", "--output", str(target)], {}, out, err) == 0
    assert target.read_bytes() == expected.encode("utf-8")
    assert out.getvalue() == "" and err.getvalue() == ""


def test_a_file_it_cannot_write_is_one_line_and_exit_1(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "missing" / "asyncapi.yaml"
    assert main(["asyncapi", "--output", str(target)], {}, out, err) == 1
    assert err.getvalue().startswith(f"chat asyncapi: cannot write {target}")
    assert err.getvalue().count("\n") == 1
