"""Process plumbing every service shares: settings base, NATS connection, logging, shutdown."""
