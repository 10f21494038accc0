"""A real OpenAI-compatible server for tests: see services.devstack.LlamaServer."""

from services.devstack import ALIAS, LlamaServer

__all__ = ["ALIAS", "LlamaServer"]
