"""The `serviceorders` command, run as a real process against PostgreSQL and SQLite."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from builders import SERVICEORDERS, cli, order_file

pytestmark = pytest.mark.integration

run = cli


def order_as(actor: str, *args: str, url: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """`serviceorders order --actor ACTOR ...`: a write command by `actor`."""
    return run("order", "--actor", actor, *args, url=url, expect=expect)


def show(order: str, url: str, *extra: str) -> dict:
    return json.loads(run("order", "show", order, "--json", *extra, url=url).stdout)


def test_help_lists_the_command_groups() -> None:
    out = run("--help", url=None).stdout
    for group in ("db", "catalog", "order", "demo"):
        assert group in out


def test_db_init_is_idempotent(url: str) -> None:
    again = run("db", "init", url=url)
    assert again.stdout.startswith("ready:")


def test_manual_capture_through_to_completion(url: str) -> None:
    order = order_as(
        "alice", "draft", "--customer", "CUST-9", "--priority", "1", url=url
    ).stdout.strip()
    for item_id, spec, setting, *extra in (
        ("1", "internet-access", "bandwidthMbps=100"),
        ("2", "managed-router", "model=c1100", "--depends-on", "1"),
    ):
        line = ("add-line", order, "--item", item_id, "--spec", spec, "--site", "SITE-1")
        order_as("alice", *line, "--set", setting, *extra, url=url)
    refused = order_as("alice", "submit", order, url=url, expect=1)
    assert "missing_characteristic" in refused.stderr and "accessType" in refused.stderr
    order_as("alice", "configure-line", order, "1", "--set", "accessType=fibre", url=url)
    order_as("alice", "submit", order, url=url)
    assert show(order, url)["state"] == "acknowledged"

    four_eyes = order_as("alice", "approve", order, url=url, expect=1)
    assert "four-eyes" in four_eyes.stderr
    order_as("bob", "approve", order, "--note", "ok", url=url)
    order_as("activation", "item-state", order, "1", "completed", url=url)
    order_as("activation", "item-state", order, "2", "completed", url=url)

    final = show(order, url)
    assert final["state"] == "completed"
    assert {i["state"] for i in final["items"].values()} == {"completed"}
    assert show(order, url, "--version", "5")["state"] == "acknowledged"
    assert show(order, url, "--version", "4")["state"] == "draft"
    history = run("order", "events", order, url=url).stdout
    assert "OrderApproved" in history and "bob (operator) via cli" in history
    lines = [
        json.loads(line)
        for line in run("order", "events", order, "--json", url=url).stdout.splitlines()
    ]
    assert [e["version"] for e in lines] == list(range(1, final["version"] + 1))
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(lines))


def test_illegal_transition_is_refused_with_the_state_named(url: str) -> None:
    order = order_as("alice", "draft", url=url).stdout.strip()
    refused = order_as("bob", "approve", order, url=url, expect=1)
    assert f"order {order} is draft; cannot approve" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_refusals_name_their_code_and_exit_as_the_answers_table_says(url: str) -> None:
    """Each refusal is `refused (CODE): message` with the exit status of the domain's one
    table of answers (as the API's TMF Error code and the dead letter's category)."""
    from serviceorders.domain.errors import ANSWERS

    order = order_as("alice", "draft", url=url).stdout.strip()
    cases = [
        ("illegal_transition", ("approve", order)),
        ("validation_failed", ("submit", order)),  # no items
        ("order_not_found", ("note", "CRM-NO-SUCH-ORDER", "hello")),
        ("unknown_item", ("configure-line", order, "9", "--set", "x=1")),
        ("invalid_command", ("note", order, " ")),
        # a value the domain's types refuse while the command is parsed
        ("invalid_command", ("add-line", order, "--item", "1", "--quantity", "0")),
    ]
    for code, args in cases:
        refused = order_as("alice", *args, url=url, expect=ANSWERS[code].cli_exit)
        assert refused.stderr.startswith(f"refused ({code}): "), refused.stderr
        assert "Traceback" not in refused.stderr


def test_write_commands_need_an_actor(url: str) -> None:
    done = run("order", "draft", url=url, expect=2)
    assert "--actor" in done.stderr


def test_create_from_file_is_idempotent_and_named_by_external_id(url: str, tmp_path: Path) -> None:
    file = order_file(tmp_path / "order.json", "UP-77", bandwidth=123, site="S")
    first = order_as("crm", "create", str(file), url=url).stdout.split()
    second = order_as("crm", "create", str(file), url=url).stdout
    assert first[1] == "created" and "already exists" in second and first[0] in second
    by_external_id = show("UP-77", url)
    assert by_external_id["id"] == first[0]
    assert [f["code"] for f in by_external_id["flags"]] == ["value_not_allowed"]
    order_as("bob", "reject", "UP-77", "--reason", "bandwidth", url=url)
    assert show("UP-77", url)["state"] == "rejected"


def test_unknown_order_is_a_clear_refusal(url: str) -> None:
    done = run("order", "show", "00000000-0000-0000-0000-000000000000", url=url, expect=1)
    assert "no order" in done.stderr


def test_catalog_json_is_a_tmf633_list_and_needs_no_database() -> None:
    unreachable = "postgresql://nobody@127.0.0.1:1/nowhere"
    specs = json.loads(run("catalog", "--json", url=unreachable).stdout)
    assert isinstance(specs, list) and len(specs) >= 6
    names = {s["name"] for s in specs}
    assert {
        "Dedicated Internet Access",
        "SD-WAN Site",
        "Ethernet Private Line",
        "Managed Router",
        "SIP Trunk",
    } <= names
    value_types = set()
    for spec in specs:
        assert {"id", "name", "version", "serviceSpecCharacteristic"} <= spec.keys()
        for char in spec["serviceSpecCharacteristic"]:
            value_types.add(char["valueType"])
            assert char["minCardinality"] in (0, 1)
            for value in char["serviceSpecCharacteristicValue"]:
                assert "value" in value or "valueFrom" in value or "valueTo" in value
    assert value_types <= {"string", "integer", "number", "boolean", "date", "dateTime"}
    internet = next(s for s in specs if s["id"] == "internet-access")
    chars = {c["name"]: c for c in internet["serviceSpecCharacteristic"]}
    assert chars["bandwidthMbps"]["minCardinality"] == 1
    assert chars["ipv6Enabled"]["minCardinality"] == 0
    assert 100 in [v["value"] for v in chars["bandwidthMbps"]["serviceSpecCharacteristicValue"]]
    defaults = [
        v for v in chars["ipv4Block"]["serviceSpecCharacteristicValue"] if v.get("isDefault")
    ]
    assert [v["value"] for v in defaults] == ["/29"]
    epl = next(s for s in specs if s["id"] == "ethernet-private-line")
    bandwidth = next(c for c in epl["serviceSpecCharacteristic"] if c["name"] == "bandwidthMbps")
    ranges = [v for v in bandwidth["serviceSpecCharacteristicValue"] if "valueFrom" in v]
    assert ranges == [
        {
            "valueType": "integer",
            "valueFrom": 10,
            "valueTo": 100000,
            "isDefault": False,
            "unitOfMeasure": "Mbit/s",
        }
    ]


def test_demo_runs_on_the_embedded_default(tmp_path: Path) -> None:
    out = run("demo", url=None, cwd=tmp_path).stdout
    assert "state     completed" in out and "OrderCompleted" in out
    assert (tmp_path / "serviceorders.db").exists()
    second = run("demo", url=None, cwd=tmp_path).stdout
    assert second.count("OrderDrafted") == 1  # a new order, on the same store


def test_serve_keeps_the_read_models_following_the_log(tmp_path: Path) -> None:
    """`serve` on the embedded default: new orders reach the read models; SIGTERM stops it."""
    import signal
    import socket
    import sqlite3
    import time

    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [SERVICEORDERS, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "serviceorders.db").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        run("demo", url=None, cwd=tmp_path)
        rows: list = []
        while time.monotonic() < deadline:
            with sqlite3.connect(tmp_path / "serviceorders.db") as db:
                rows = db.execute("SELECT state, version FROM order_summary").fetchall()
            if rows == [("completed", 8)]:
                break
            time.sleep(0.2)
        assert rows == [("completed", 8)]
        status = run("projections", "status", "--json", url=None, cwd=tmp_path).stdout
        assert {s["lag"] for s in json.loads(status)} == {0}
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err


def test_project_once_catches_up_and_exits(url: str) -> None:
    order_as("alice", "draft", "--external-id", "P-1", url=url)
    done = run("project", "--once", url=url)
    assert "caught up" in done.stderr
    status = json.loads(run("projections", "status", "--json", url=url).stdout)
    assert {s["name"] for s in status} >= {"order_summary", "review_queue"}
    assert {s["lag"] for s in status} == {0}


def test_api_with_worker_processes_serves_and_stops(url: str, tmp_path: Path) -> None:
    """`api --workers 2`: two processes share the port (group commit and read-your-writes
    hold in each); concurrent creations all land once; SIGTERM stops every process."""
    import signal
    import socket
    import threading
    import time

    import httpx
    from serviceorders.consumers.sample import traffic

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key, agent_key = "integrator-key-0123456789abcdef", "agent-key-0123456789abcdef"
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "SERVICEORDERS_CONSOLE_SECRET")
        },
        "DATABASE_URL": url,
        "SERVICEORDERS_API_KEYS": f"crm:integrator:{key},alice:agent:{agent_key}",
    }
    server = subprocess.Popen(
        [SERVICEORDERS, "api", "--workers", "2", "--port", str(port)],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/tmf-api/serviceOrdering/v4/serviceOrder"
    headers = {"Authorization": f"Bearer {key}"}
    bodies = list(traffic(40, duplicates=0, bad=0).orders.values())  # 3 items, 2-3 sites
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base, headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not answer"
            time.sleep(0.2)
        children = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        assert len(children) >= 2, children  # the workers (uvicorn may add a helper)
        results: list[tuple[int, str]] = []

        def create(n: int) -> None:
            with httpx.Client(headers=headers, timeout=30) as client:
                for body in bodies[n::8]:
                    response = client.post(base, json=body)
                    results.append((response.status_code, response.text))

        threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [status for status, _ in results] == [201] * 40, results[:3]
        listed = httpx.get(base, headers=headers, params={"limit": 100}).json()
        assert sorted(o["externalId"] for o in listed) == sorted(b["externalId"] for b in bodies)
        # A console session opened on one worker holds on the other (one shared secret).
        console = f"http://127.0.0.1:{port}/console"
        # (a new connection per request, so that the workers take turns)
        with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as browser:
            form = browser.get(f"{console}/signin").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', form)
            assert csrf, form[:500]
            signed = browser.post(
                f"{console}/signin", data={"key": agent_key, "csrf": csrf.group(1)}
            )
            assert signed.status_code == 303, signed.text[:500]
            for _ in range(20):
                page = browser.get(f"{console}/orders")
                assert page.status_code == 200 and "alice" in page.text, page.text[:300]
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
