"""Fixtures of the tests that run the `serviceorders` command as a real process."""

from __future__ import annotations

import pytest
from builders import cli
from serviceorders.settings import Settings


@pytest.fixture
def url(settings: Settings) -> str:
    """The URL of a clean store (each backend) that `serviceorders db init` prepared."""
    url = settings.database.url(with_password=True)
    cli("db", "init", url=url)
    return url
