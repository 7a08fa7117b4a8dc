"""``chat asyncapi``: write the chat's AsyncAPI document (``chat_protocol.asyncapi``)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from chat_protocol.asyncapi import render

__all__ = ["run_asyncapi"]


def run_asyncapi(output: str | None, out: TextIO, err: TextIO) -> int:
    """Write the document to ``output``, or to ``out`` when it is ``None``.

    Returns:
        0, or 1 when the file cannot be written.
    """
    text = render()
    if output is None:
        out.write(text)
        return 0
    try:
        Path(output).write_text(text, encoding="utf-8", newline="\n")
    except OSError as exc:
        err.write(f"chat asyncapi: cannot write {output}: {exc.strerror or exc}\n")
        return 1
    return 0
