"""Session fixtures: the tiny checkpoint and its bundle (see tests/helpers/export_fixtures.py),
and the tiny anomaly model's (tests/helpers/anomaly_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.anomaly_fixtures import tiny_anomaly_bundle, tiny_anomaly_checkpoint
from tests.helpers.export_fixtures import tiny_bundle, tiny_checkpoint


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp() / "export-shared"
    base.mkdir(exist_ok=True)
    return base


@pytest.fixture(scope="session")
def checkpoint(shared: Path) -> Path:
    return tiny_checkpoint(shared)


@pytest.fixture(scope="session")
def bundle(shared: Path) -> Path:
    return tiny_bundle(shared)


@pytest.fixture(scope="session")
def anomaly_checkpoint(shared: Path) -> Path:
    return tiny_anomaly_checkpoint(shared)


@pytest.fixture(scope="session")
def anomaly_bundle(shared: Path) -> Path:
    return tiny_anomaly_bundle(shared)
