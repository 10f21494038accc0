"""Modality workers: one process per engine instance, consuming assignments and streaming results."""
