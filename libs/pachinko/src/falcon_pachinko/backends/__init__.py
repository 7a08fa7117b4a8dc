"""Backends carry room traffic and membership between connection managers."""

from __future__ import annotations

from .base import Backend, BackendSink, Member
from .memory import InProcessBackend

__all__ = ["Backend", "BackendSink", "InProcessBackend", "Member"]
