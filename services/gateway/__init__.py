"""The gateway: OpenAI-compatible HTTP API with SSE, in front of the bus."""
