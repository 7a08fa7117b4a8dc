"""Peer servers for ``benchmarks.peers``: the chat's messages on other stacks.

Each module is a plain script, started as ``python -m benchmarks.peers.servers.<name>
--port 0``: it listens on 127.0.0.1, prints ``LISTENING <port>`` on stdout once it
accepts connections, and serves until SIGTERM or SIGINT. Each speaks just enough
of the chat protocol (``README.md``, *Talking to the chat*) for the benchmark:

* ``/ws/chat/<room>?user=<name>``: the connection joins ``room``, and gets the
  welcome, a ``serverSystemMessage``, first;
* ``clientSendMessage`` ``{"text": ...}``: everyone in the room, the sender
  included, gets one ``serverNewMessage`` ``{"user", "text", "id", "seq", "ts"}``,
  encoded once for all of them.

No presence, typing, history or limits: these are the hand-written servers a
gateway is measured against. :mod:`._chat` holds the few lines they share.
"""
