"""The command line's lazy group (issue 21, start-up): `main` imports a command's module
when that command runs, and lists the commands from its table (cli/main.py, COMMANDS)
without importing any. The table must say what the modules register: the same names,
and summaries that read as the commands' own help does."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import click
from click.testing import CliRunner
from serviceorders.cli.main import COMMANDS, main


def load_every_command() -> dict[str, click.Command]:
    for lazy in COMMANDS.values():
        for module in lazy.modules:
            importlib.import_module(f"serviceorders.cli.{module}")
    return dict(main.commands)


def test_the_table_names_every_command_the_modules_register() -> None:
    registered = load_every_command()
    assert sorted(registered) == sorted(COMMANDS)
    for name, command in registered.items():
        assert not command.hidden, name  # the group's help lists every command


def test_each_summary_reads_as_the_commands_help_at_every_width() -> None:
    registered = load_every_command()
    for name, command in registered.items():
        for limit in range(10, 200):
            lazy = click.utils.make_default_short_help(COMMANDS[name].summary, limit).strip()
            assert lazy == command.get_short_help_str(limit), (name, limit)


def test_a_command_loads_its_modules_only_when_it_runs() -> None:
    """A fresh interpreter: the group's help imports no command module, `project --help`
    only cli/processes.py, and neither loads the domain or the runtime."""
    code = (
        "import json, sys\n"
        "from serviceorders.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:], prog_name='serviceorders')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('serviceorders.'))))\n"
    )

    def loaded(*args: str) -> set[str]:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": "80"},
        )
        return set(json.loads(done.stdout.strip().splitlines()[-1]))

    commands = {f"serviceorders.cli.{m}" for lazy in COMMANDS.values() for m in lazy.modules}
    heavy = {"serviceorders.bootstrap", "serviceorders.serve", "serviceorders.domain.events"}
    on_help = loaded("--help")
    assert not on_help & commands, on_help & commands
    assert not on_help & heavy, on_help & heavy
    on_project = loaded("project", "--help")
    assert on_project & commands == {"serviceorders.cli.processes"}
    assert not on_project & heavy, on_project & heavy


def test_the_groups_help_is_the_one_click_writes_with_every_command_loaded() -> None:
    """The help a fresh process prints (from the table) == click's own rendering once every
    module is imported (from the commands themselves), at the same terminal width."""
    code = (
        "import importlib, sys\n"
        "from serviceorders.cli.main import COMMANDS, main\n"
        "if sys.argv[1] == 'loaded':\n"
        "    for lazy in COMMANDS.values():\n"
        "        for module in lazy.modules:\n"
        "            importlib.import_module(f'serviceorders.cli.{module}')\n"
        "main(['--help'], prog_name='serviceorders')\n"
    )

    def shown(how: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", code, how],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "COLUMNS": "80"},
        ).stdout

    lazy, loaded = shown("lazy"), shown("loaded")
    assert "publish-sample  Publish realistic TMF641 traffic" in lazy, lazy
    assert lazy == loaded


def test_an_unknown_command_is_refused_as_before() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output
