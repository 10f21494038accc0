"""Engines behind the one engine interface; each module imports its heavy library lazily."""
