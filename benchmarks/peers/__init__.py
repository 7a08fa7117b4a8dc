"""Peer fan-out: the chat protocol served by the product and by other stacks, same load.

Servers under test (each a real process on 127.0.0.1, started fresh):

* ``product``: chat-gateway + chat-rooms + nats-server, durable history on;
* ``memory``: the gateway alone, ``CHAT_BACKEND=memory``, history on; ``memory-asgi``
  the same through plain ASGI, ``granian`` the same app on Granian;
* ``websockets``, ``picows``, ``falcon``: hand-written rooms on those stacks
  (:mod:`benchmarks.peers.servers`);
* ``socketio``: two python-socketio processes joined by Redis.

A load generator of K worker processes (:mod:`benchmarks.peers.loadgen`) offers
open-loop rate steps of deliveries/s to R rooms x C clients and measures delivery,
latency and the servers' CPU per delivery; an idle mode measures the memory per
connection and the time of a connect storm. See ``benchmarks/README.md``.

    python -m benchmarks.peers [--quick] [--scenario 10x20|4x250] [--only KEY,...]
"""
