"""Fixtures of the tests that run the `serviceorders` command as a real process."""

from __future__ import annotations

import pytest
from serviceorders.bootstrap import init_database
from serviceorders.settings import Settings


@pytest.fixture
def url(settings: Settings) -> str:
    """The URL of a clean store (each backend) prepared as `serviceorders db init` prepares
    it: by its init_database, called here rather than in a process of its own (half a second
    less per test; the tests of `db init` itself run the command)."""
    init_database(settings)
    return settings.database.url(with_password=True)
