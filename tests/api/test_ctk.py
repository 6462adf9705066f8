"""TM Forum's TMF641 v4 conformance test kit (CTK), run by newman against the live server,
on both backends: every one of its assertions must pass.

The kit (Postman collection, environment, schemas and config.json, vendored unmodified in
tests/api/tmf641/ctk, see SOURCES.md there) comes with a small Node runner that we do not
ship; `apply_kit_config` does what it does: it reads config.json, validates the POST payload
against the kit's ServiceOrder schema, puts the payload into the first request, sets the
configured headers on every request and writes the environment with `Service_Ordering`
= the configured URL. Our config.json is the kit's, with our URL and a valid order of our
catalog as the payload (the kit's default, an item with an empty service, is refused).

newman comes from the npm registry into .ci/node_modules (`.ci/run` installs it; this test
installs it the same way when it is missing, and FAILS when it cannot).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from builders import tmf_item

ROOT = Path(__file__).resolve().parents[2]
KIT = Path(__file__).parent / "tmf641" / "ctk"
NEWMAN_PACKAGE = "newman@6"
NEWMAN = ROOT / ".ci" / "node_modules" / ".bin" / "newman"
BASE_PATH = "/tmf-api/serviceOrdering/v4"

# The kit's config.json mechanism: the POST payload is an order our catalog accepts.
PAYLOAD = {"serviceOrderItem": [tmf_item("1", place={"id": "S1", "role": "installationSite"})]}

# Requests and assertions of the kit (9 requests; some send without asserting anything).
CTK_REQUESTS = 9


def newman() -> Path:
    """newman from .ci/node_modules, installed from the npm registry when missing."""
    if not NEWMAN.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(
                "newman is not installed in .ci/node_modules and npm is not on PATH: "
                "install Node.js and npm (bash .ci/run does the rest)",
                pytrace=False,
            )
        done = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(ROOT / ".ci"),
                NEWMAN_PACKAGE,
                "--no-audit",
                "--no-fund",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not NEWMAN.exists():
            pytest.fail(
                f"could not install {NEWMAN_PACKAGE} into .ci/node_modules:\n"
                f"{done.stdout}\n{done.stderr}",
                pytrace=False,
            )
    return NEWMAN


def kit_config(base_url: str) -> dict[str, Any]:
    """The kit's config.json with our API's URL (ending in `/`) and our payload."""
    config = json.loads((KIT / "config.json").read_text(encoding="utf-8"))
    config["url"] = f"{base_url}{BASE_PATH}/"
    config["payloads"]["ServiceOrder"]["POST"]["payload"] = PAYLOAD
    return config


def apply_kit_config(config: dict[str, Any], into: Path) -> tuple[Path, Path]:
    """What the kit's runner does with config.json: returns (collection, environment)."""
    payload = config["payloads"]["ServiceOrder"]["POST"]["payload"]
    schema = json.loads((KIT / "schemas" / "ServiceOrder.schema.json").read_text("utf-8"))
    schema.pop("$schema")  # "http://json-schema.org/schema#": no draft named; use the latest
    errors = [e.message for e in jsonschema_rs.validator_for(schema).iter_errors(payload)]
    assert not errors, f"the CTK payload does not pass the kit's own schema: {errors}"

    collection = json.loads(
        (KIT / "CTK-Service_Ordering-4.0.0.postman_collection.json").read_text("utf-8")
    )
    headers = [{"key": k, "value": v} for k, v in config["headers"].items()]
    requests = list(_requests(collection["item"]))
    assert len(requests) == CTK_REQUESTS, "not the kit this test was written for"
    for request in requests:
        request["header"] = copy.deepcopy(headers)
    requests[0]["body"] = {"mode": "raw", "raw": json.dumps(payload, indent=2)}

    environment = json.loads((KIT / "TMFENV-V4.0.0.postman_environment.json").read_text("utf-8"))
    for variable in environment["values"]:
        if variable["key"] == "Service_Ordering":
            variable["value"] = config["url"]

    (into / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    paths = into / "pmtest.json", into / "TMFENV.json"
    for path, document in zip(paths, (collection, environment), strict=True):
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return paths


def _requests(items: list[dict[str, Any]]) -> Any:
    for item in items:
        if "item" in item:
            yield from _requests(item["item"])
        else:
            yield item["request"]


def test_tm_forum_ctk_passes(
    live_server: str, tmp_path: Path, order_body: Callable[..., dict[str, Any]]
) -> None:
    # Other orders in the store: the kit checks every order the list returns.
    for external_id in ("ctk-neighbour-1", "ctk-neighbour-2"):
        response = httpx.post(
            f"{live_server}{BASE_PATH}/serviceOrder", json=order_body(external_id), timeout=30
        )
        assert response.status_code == 201, response.text
    collection, environment = apply_kit_config(kit_config(live_server), tmp_path)
    results = tmp_path / "jsonResults.json"
    done = subprocess.run(
        [
            str(newman()),
            "run",
            str(collection),
            "-e",
            str(environment),
            "--insecure",
            "--color",
            "off",
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert results.exists(), f"newman wrote no results:\n{done.stdout}\n{done.stderr}"

    run = json.loads(results.read_text(encoding="utf-8"))["run"]
    stats = run["stats"]
    failures = [
        f"{f['source'].get('name', '?')}: {f['error'].get('test', '')} "
        f"{f['error'].get('message', '')}"
        for f in run["failures"]
    ]
    assert not failures, "CTK failures:\n" + "\n".join(failures) + f"\n\n{done.stdout}"
    assert stats["requests"]["total"] == CTK_REQUESTS and stats["requests"]["failed"] == 0
    assert stats["assertions"]["failed"] == 0
    # The kit asserts on 6 of its 9 requests (59 assertions with one order in the store).
    assert stats["assertions"]["total"] >= 59, stats["assertions"]
    assert done.returncode == 0, done.stdout
