"""A real nats-server for tests: see services.devstack.NatsServer."""

from services.devstack import NatsServer, free_port

__all__ = ["NatsServer", "free_port"]
