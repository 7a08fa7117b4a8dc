"""What every chat service shares at run time: settings, logs, NATS, uvicorn, health, metrics."""
