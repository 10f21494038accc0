"""The scheduler: turns requests and worker status into assignments."""
