"""What every chat service shares at run time: settings, logging, NATS, health and metrics."""
