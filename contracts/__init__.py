"""The one source of truth for every message, subject, stream and bucket on the ModalMesh bus."""

SCHEMA_VERSION = 1
