"""`serviceorders order create FILE` with an external id already used (issue 17,
deliverable 4): the same content prints `already exists`; other content is refused with one
line naming the key and the paths that differ (never the values) and exit status 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import cli, order_file

pytestmark = pytest.mark.integration


def test_a_resend_with_other_content_is_refused_in_one_line(url: str, tmp_path: Path) -> None:
    first = order_file(tmp_path / "first.json", "CLI-R-1", bandwidth=100)
    created = cli("order", "--actor", "crm", "create", str(first), url=url)
    order_id = created.stdout.split()[0]
    assert created.stdout.strip().endswith("created")

    again = cli("order", "--actor", "crm", "create", str(first), url=url)
    assert again.stdout.strip() == f"{order_id} already exists"

    other = order_file(tmp_path / "other.json", "CLI-R-1", bandwidth=9999, site="S7")
    refused = cli("order", "--actor", "crm", "create", str(other), url=url, expect=1)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "resend_conflict" in lines[0] and "externalId 'CLI-R-1'" in lines[0]
    assert "items[1].characteristics.bandwidthMbps" in lines[0] and "items[1].place.id" in lines[0]
    assert "9999" not in lines[0] and "S7" not in lines[0]
