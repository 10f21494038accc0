"""The monitor agent: one per node, publishing telemetry, capabilities and alerts."""
