"""The server tests use the export tests' session fixtures: one tiny checkpoint and bundle."""

from tests.export.conftest import bundle, checkpoint, shared  # noqa: F401
