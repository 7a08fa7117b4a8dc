"""``chat asyncapi``: write the chat's AsyncAPI document (``chat_protocol.asyncapi``) as YAML.

The document is built from the protocol's structs by
:func:`chat_protocol.asyncapi.document`; YAML is only this command's concern, so
the services, which install ``chat_protocol``, need no YAML library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import yaml

from chat_protocol.asyncapi import document

__all__ = ["render", "run_asyncapi"]


# PyYAML has no type hints, so its classes are Any to mypy.
class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Multi-line text (descriptions with lists and tables) as literal blocks; no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    """The document as YAML text, keys in the document's order."""
    text: str = yaml.dump(
        document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )
    return text


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
