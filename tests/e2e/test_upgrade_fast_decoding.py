"""The upgrade fixtures (the databases older releases wrote: tests/fixtures/upgrade and
upgrade_doors), brought to this schema by `db init`, project to the same rows in every
read model whether the projector decodes stored events into msgspec mirrors or into
pydantic models (issue 21): their events include what only the pydantic way reads
(upcasts, events stored before later fields existed)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from projected import assert_same_rows
from serviceorders.bootstrap import event_mapper, open_read_db
from serviceorders.projections.log import EventLog
from serviceorders.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXE = shutil.which("serviceorders")


@pytest.fixture(
    params=[
        ("sqlite", "upgrade/prev.db"),
        ("postgres", "upgrade/prev-postgres.sql.gz"),
        ("sqlite", "upgrade_doors/doors.db.gz"),
        ("postgres", "upgrade_doors/doors-postgres.sql.gz"),
    ],
    ids=["upgrade-sqlite", "upgrade-postgres", "doors-sqlite", "doors-postgres"],
)
def upgraded(
    request: pytest.FixtureRequest, tmp_path: Path, new_pg_database: Callable[..., str]
) -> str:
    backend, fixture = request.param
    path = FIXTURES / fixture
    if backend == "sqlite":
        copy = tmp_path / "old.db"
        data = path.read_bytes()
        copy.write_bytes(gzip.decompress(data) if path.suffix == ".gz" else data)
        url = f"sqlite:///{copy}"
    else:
        url = new_pg_database("so_fast_decoding", path, 120)
    assert EXE, "the serviceorders console script is not installed"
    subprocess.run(
        [EXE, "--database-url", url, "db", "init"], check=True, capture_output=True, timeout=300
    )
    return url


def test_the_upgrade_fixtures_project_the_same_rows_either_way(upgraded: str) -> None:
    db = open_read_db(Settings.from_env({"DATABASE_URL": upgraded}))
    try:
        reference = assert_same_rows(db, batch_size=7)
        assert reference["order_summary"] and reference["order_document"]
        # the fast way did decode a good share of them into mirrors
        events = [e for _, e in EventLog(db, event_mapper()).read(after=0, limit=100_000)]
        mirrored = [e for e in events if hasattr(type(e), "__mirror_of__")]
        assert len(mirrored) > len(events) / 4
    finally:
        db.close()
