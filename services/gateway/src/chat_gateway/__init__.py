"""The chat's WebSocket gateway: authenticates clients and serves chat rooms."""
