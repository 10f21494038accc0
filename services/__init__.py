"""ModalMesh services: gateway, scheduler, monitor, workers, aggregator, each its own process."""
