"""The domain stays pure: no Kafka, web framework or database driver inside `domain/`."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import serviceorders.domain

pytestmark = pytest.mark.integration

FORBIDDEN = (
    "kafka",
    "confluent_kafka",
    "aiokafka",
    "fastapi",
    "starlette",
    "psycopg",
    "psycopg2",
    "psycopg_pool",
    "sqlite3",
    "_sqlite3",
)
# The library's own adapters for those drivers count too.
FORBIDDEN_QUALIFIED = ("eventsourcing.postgres", "eventsourcing.sqlite")

DOMAIN_DIR = Path(serviceorders.domain.__path__[0])


def is_forbidden(module: str) -> bool:
    return any(
        module == name or module.startswith(name + ".") for name in FORBIDDEN + FORBIDDEN_QUALIFIED
    )


def domain_files() -> list[Path]:
    files = sorted(DOMAIN_DIR.rglob("*.py"))
    assert files, f"no Python files found under {DOMAIN_DIR}"
    return files


def imported_names(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.append(node.args[0].value)
    return names


def test_domain_sources_import_nothing_forbidden():
    files = domain_files()
    assert DOMAIN_DIR / "order.py" in files and DOMAIN_DIR / "application.py" in files
    offences = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad = sorted({n for n in imported_names(tree) if is_forbidden(n)})
        if bad:
            offences[str(path.relative_to(DOMAIN_DIR))] = bad
    assert offences == {}


def test_the_static_check_would_catch_an_offence():
    source = (
        "import sqlite3\nfrom psycopg import sql\nimport kafka.consumer as k\n"
        "from fastapi import FastAPI\nimport starlette.requests\n"
        "from eventsourcing.postgres import PostgresFactory\nimport json\n"
        "from eventsourcing import domain\n"
        "import importlib\nimportlib.import_module('confluent_kafka')\n"
    )
    bad = sorted({n for n in imported_names(ast.parse(source)) if is_forbidden(n)})
    assert bad == [
        "confluent_kafka",
        "eventsourcing.postgres",
        "eventsourcing.postgres.PostgresFactory",
        "fastapi",
        "fastapi.FastAPI",
        "kafka.consumer",
        "psycopg",
        "psycopg.sql",
        "sqlite3",
        "starlette.requests",
    ]


PROBE = """
import importlib, json, pkgutil, sys
import serviceorders.domain as domain
modules = [m.name for m in pkgutil.walk_packages(domain.__path__, domain.__name__ + ".")]
for name in modules:
    importlib.import_module(name)
forbidden = tuple(json.loads(sys.argv[1]))
loaded = sorted(m for m in sys.modules
                if any(m == f or m.startswith(f + ".") for f in forbidden))
print(json.dumps({"modules": modules, "loaded": loaded}))
"""


def test_importing_every_domain_module_loads_nothing_forbidden():
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(FORBIDDEN + FORBIDDEN_QUALIFIED)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    modules = report["modules"]
    assert modules, "found no serviceorders.domain modules to import"
    expected = {
        f"serviceorders.domain.{p.stem}" for p in DOMAIN_DIR.glob("*.py") if p.stem != "__init__"
    }
    assert expected <= set(modules)
    assert "serviceorders.domain.order" in modules
    assert report["loaded"] == []
