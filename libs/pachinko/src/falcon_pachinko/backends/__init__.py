"""Backends carry room traffic (a broker) and presence between connection managers."""

from __future__ import annotations

from .base import Backend, BackendSink, Broker, BrokerSink, Member, Presence, PresenceSink
from .memory import InProcessBackend, InProcessBroker, InProcessPresence

__all__ = [
    "Backend",
    "BackendSink",
    "Broker",
    "BrokerSink",
    "InProcessBackend",
    "InProcessBroker",
    "InProcessPresence",
    "Member",
    "Presence",
    "PresenceSink",
]
