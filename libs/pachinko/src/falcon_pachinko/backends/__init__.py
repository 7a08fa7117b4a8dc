"""Backends carry room traffic (a broker), presence and history between connection managers."""

from __future__ import annotations

from .base import (
    Backend,
    BackendSink,
    Broker,
    BrokerSink,
    History,
    Member,
    Presence,
    PresenceSink,
)
from .memory import InProcessBackend, InProcessBroker, InProcessHistory, InProcessPresence

__all__ = [
    "Backend",
    "BackendSink",
    "Broker",
    "BrokerSink",
    "History",
    "InProcessBackend",
    "InProcessBroker",
    "InProcessHistory",
    "InProcessPresence",
    "Member",
    "Presence",
    "PresenceSink",
]
