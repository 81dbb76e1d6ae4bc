"""The server tests use the export tests' session fixtures: one tiny checkpoint and bundle."""

from tests.export.conftest import (  # noqa: F401
    anomaly_bundle,
    anomaly_checkpoint,
    bundle,
    checkpoint,
    shared,
)
