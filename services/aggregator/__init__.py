"""The aggregator: merges result chunks in order and streams them to the gateway."""
