"""The static tools see the whole package (issue 16).

The rooms are top-level folders mapped under `serviceorders` by pyproject's `package-dir`.
With setuptools' default editable install, import-linter (grimp) finds `serviceorders` in
runtime/ and nothing else: a layers contract would pass while checking a quarter of the
code. So the graph the tool builds must hold every module found by walking the mapped
folders (the README installs in strict editable mode, which gives it that), and then
`lint-imports` must pass (the contracts in pyproject's [tool.importlinter])."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
REINSTALL = (
    "install the package in strict editable mode, as the README's commands do "
    "(.venv/bin/pip install -q --no-deps -e . --config-settings editable_mode=strict); "
    "again after a module is added, removed or renamed"
)


def source_modules() -> dict[str, Path]:
    """Every module of the package, by walking the folders pyproject maps (none of them
    lies inside another): module name -> file."""
    found: dict[str, Path] = {}
    for package, folder in SETUPTOOLS["package-dir"].items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            relative = path.relative_to(base)
            if "__pycache__" in relative.parts:
                continue
            dotted = ".".join((package, *relative.with_suffix("").parts))
            found[dotted.removesuffix(".__init__")] = path
    return found


def test_every_folder_with_modules_is_a_listed_package() -> None:
    """A package folder missing from pyproject's `packages` would not ship (nor be seen);
    the mapped folders are not nested (the walk above counts each file once)."""
    folders = [ROOT / f for f in SETUPTOOLS["package-dir"].values()]
    nested = [(a, b) for a in folders for b in folders if a != b and a in b.parents]
    assert not nested, nested
    listed = set(SETUPTOOLS["packages"])
    packages = {name for name, path in source_modules().items() if path.name == "__init__.py"}
    assert packages == listed, (
        f"folders with an __init__.py but not in [tool.setuptools] packages: "
        f"{sorted(packages - listed)}; listed but without an __init__.py: "
        f"{sorted(listed - packages)}"
    )
    stray = sorted(
        str(path.relative_to(ROOT))
        for name, path in source_modules().items()
        if name.rpartition(".")[0] not in listed and path.name != "__init__.py"
    )
    assert not stray, f"modules outside any listed package: {stray}"


def test_the_import_graph_holds_every_module_of_the_package() -> None:
    expected = set(source_modules())
    assert len(expected) > 80, sorted(expected)  # the walk itself found the rooms
    try:
        graph = grimp.build_graph("serviceorders", cache_dir=None)
    except FileNotFoundError as e:  # a link to a module that is gone
        pytest.fail(f"the installed link tree is stale ({e}): {REINSTALL}")
    seen = set(graph.modules)
    missing = sorted(expected - seen)
    assert not missing, (
        f"the import graph lint-imports builds lacks {len(missing)} of {len(expected)} "
        f"modules ({', '.join(missing[:8])}{', ...' if len(missing) > 8 else ''}): {REINSTALL}"
    )
    extra = sorted(seen - expected)
    assert not extra, f"the import graph holds modules no folder has: {extra}: {REINSTALL}"


def test_lint_imports_keeps_every_contract() -> None:
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    assert {c["type"] for c in contracts} >= {"layers", "forbidden", "acyclic_siblings"}
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), f"no lint-imports beside {sys.executable}: the test extra"
    done = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in output, output[-6000:]
