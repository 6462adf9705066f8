"""One door to the domain (issue 16), shown on the source: outside domain/ nothing calls an
aggregate's command methods, the application's write use cases, `save` or the event store's
writes; the application's handlers (domain/application.py) are the only caller. No door
seals personal data (`ServiceOrders.handle` does) or passes a four-eyes flag (the
application's setting, given once by the composition root), opens a unit of work (the
Kafka door only: its batch) or maps a store conflict itself. Reads are exempt.

The rules are read off the classes, not listed by hand: a command method is a public method
of `ServiceOrder` (or a write use case of `ServiceOrders`) whose first argument is the
command's context. A call counts as one only when it looks like one: the method's name, and a
context as its first argument or an order / the application as its receiver, so that
`consumer.resume(tp)`, `pool.submit(fn)`, `store.delete(id)` and `router.delete(path)` are not
taken for commands.
"""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from serviceorders.domain.application import ServiceOrders
from serviceorders.domain.order import ServiceOrder

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

# The application's door and what is not a write: handle, unit_of_work and the reads.
DOOR = {"handle", "unit_of_work"}
# Sealing personal data is the application's (handle's) business, not a door's.
SEALING = {"protect", "protect_change", "protect_place", "seal"}
# The event store's writes; storage/ implements them (its recorders and group commit).
STORE_WRITES = {"insert_events", "_insert_events", "put"}
# The composition root gives the application its four-eyes setting; nobody else passes one.
COMPOSITION_ROOT = "runtime/bootstrap.py"
SETTINGS = "runtime/settings.py"  # builds the Policy the composition root passes
SETTINGS = "runtime/settings.py"
# Only the Kafka door batches many commands into one unit of work.
UNIT_OF_WORK_DOOR = "consumers/"
# The store's conflict is mapped by the application (and the recorders), not by a door.
CONFLICT_MAPPERS = ("storage/",)

CONTEXT = re.compile(r"(^|[._])(ctx|cmd|context)", re.IGNORECASE)
ORDER_OR_APP = re.compile(r"^(o|order|aggregate|app|application|orders|service_orders)$")


def _takes_context_first(member: object) -> bool:
    function = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
    if not inspect.isfunction(function):
        return False
    params = list(inspect.signature(function).parameters.values())
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return bool(params) and params[0].name == "ctx"


def command_methods() -> set[str]:
    """ServiceOrder's public command methods (first argument the context), its
    `trigger_event`, and ServiceOrders' write use cases (the wrappers until they go)."""
    names = {
        name
        for cls in (ServiceOrder, ServiceOrders)
        for name, member in vars(cls).items()
        if not name.startswith("_") and _takes_context_first(member)
    }
    return (names | {"trigger_event"}) - DOOR


def package_folders() -> dict[str, str]:
    """The folders of the package (pyproject's package-dir), each with its package name."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    return {folder: package for package, folder in mapping.items()}


def source_files() -> Iterator[Path]:
    for folder in sorted(package_folders()):
        if folder == "domain":
            continue
        base = ROOT / folder
        yield from sorted(base.rglob("*.py"))


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _dotted(node: ast.expr) -> str:
    """`a.b.c` for a name or attribute chain; calls and subscripts by their callee."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    if isinstance(node, ast.Subscript):
        return _dotted(node.value)
    return ""


def _callee(call: ast.Call) -> tuple[str, str]:
    """(receiver, name) of a call: ('order', 'approve') for `order.approve(...)`, ('',
    'protect') for `protect(...)`."""
    if isinstance(call.func, ast.Attribute):
        return _dotted(call.func.value), call.func.attr
    if isinstance(call.func, ast.Name):
        return "", call.func.id
    return "", ""


def _looks_like_command(call: ast.Call, receiver: str) -> bool:
    first = call.args[0] if call.args else None
    if first is None:
        first = next((k.value for k in call.keywords if k.arg == "ctx"), None)
    if first is not None and CONTEXT.search(_dotted(first)):
        return True
    tail = receiver.rsplit(".", 1)[-1].lower()
    return receiver == "ServiceOrder" or bool(
        (call.args or call.keywords) and ORDER_OR_APP.search(tail)
    )


def findings(path: Path, commands: set[str], root: Path = ROOT) -> Iterator[Finding]:
    relative = path.relative_to(root).as_posix()
    tree = ast.parse(path.read_text(), filename=relative)
    in_storage = relative.startswith("storage/")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        receiver, name = _callee(node)
        where = f"{receiver}.{name}" if receiver else name
        if name in commands and receiver and _looks_like_command(node, receiver):
            yield Finding(relative, node.lineno, f"calls the command {where}(...)")
        elif name == "save" and receiver:
            yield Finding(relative, node.lineno, f"saves: {where}(...)")
        elif (
            name in STORE_WRITES
            and not in_storage
            and (name != "put" or receiver.endswith("events"))
        ):
            yield Finding(relative, node.lineno, f"writes the event store: {where}(...)")
        elif name in SEALING:
            yield Finding(relative, node.lineno, f"seals personal data: {where}(...)")
        if name == "unit_of_work" and not relative.startswith(UNIT_OF_WORK_DOOR):
            yield Finding(relative, node.lineno, f"opens a unit of work: {where}(...)")
        if name == "ConcurrencyConflict" and not relative.startswith(CONFLICT_MAPPERS):
            yield Finding(relative, node.lineno, "maps a store conflict: ConcurrencyConflict(...)")
        for keyword in node.keywords:
            if keyword.arg == "four_eyes" and not (
                (relative == COMPOSITION_ROOT and name == "ServiceOrders")
                or (relative == SETTINGS and name == "Policy")  # the setting, read once
            ):
                yield Finding(relative, node.lineno, f"passes four_eyes= to {where}(...)")


def test_the_rules_are_read_off_the_domain() -> None:
    commands = command_methods()
    # Every action of the lifecycle, from both the aggregate and the old wrappers.
    assert {"receive", "draft", "add_line", "approve", "reject", "cancel", "delete"} <= commands
    assert {"validate", "snapshot_state", "create_id", "get_order", "history"}.isdisjoint(commands)
    assert DOOR.isdisjoint(commands)


def test_the_walk_reads_every_room() -> None:
    folders = set(package_folders())
    assert {"runtime", "api", "consumers", "cli", "storage", "audit"} <= folders
    read = {path.relative_to(ROOT).parts[0] for path in source_files()}
    assert read == folders - {"domain"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("order.approve(ctx, note)", "calls the command order.approve(...)"),
        ("ServiceOrder.receive(upstream, header, items, catalog)", "calls the command"),
        ("app.approve(ctx, order_id)", "calls the command app.approve(...)"),
        ("o.add_line(context, item)", "calls the command o.add_line(...)"),
        ("ctx.app.save(order)", "saves: ctx.app.save(...)"),
        ("app.recorder.insert_events(events)", "writes the event store"),
        ("app.protect(ctx, header, items)", "seals personal data"),
        ("self.sealer.seal('scope', value)", "seals personal data"),
        ("f(four_eyes=False)", "passes four_eyes="),
        ("with app.unit_of_work(()) as u: pass", "opens a unit of work"),
        ("raise ConcurrencyConflict(order.id, 'reload')", "maps a store conflict"),
    ],
)
def test_it_catches(source: str, expected: str, tmp_path: Path) -> None:
    found = _scan(source, tmp_path)
    assert len(found) == 1 and expected in str(found[0]), found


@pytest.mark.parametrize(
    "source",
    [
        "consumer.resume(*partitions)",
        "self.consumer.resume(tp)",
        "self.pool.submit(self._deliver, sub_id)",
        "store.delete(id)",
        "store.resume(id)",
        "router.delete('/x')",
        "task.cancel()",
        "self._deadline.cancel()",
        "items.remove(x)",
        "queue.put(item)",
        "app.handle(ctx, Approve(OrderRef(order_id)), expected_version=3)",
        "app.get_order(order_id)",
        "app.history(order_id)",
    ],
)
def test_it_lets_pass(source: str, tmp_path: Path) -> None:
    assert _scan(source, tmp_path) == []


def _scan(source: str, tmp_path: Path) -> list[Finding]:
    folder = tmp_path / "api"
    folder.mkdir(exist_ok=True)
    path = folder / "door.py"
    path.write_text(source + "\n")
    return list(findings(path, command_methods(), root=tmp_path))


def test_only_the_applications_handlers_change_orders() -> None:
    commands = command_methods()
    offending = [str(f) for path in source_files() for f in findings(path, commands)]
    assert not offending, (
        "outside domain/ only ServiceOrders.handle / the unit of work may call the domain's "
        "commands, save, write the event store, seal personal data, pass four_eyes=, open a "
        "unit of work (Kafka aside) or map a store conflict "
        f"({len(offending)} places):\n" + "\n".join(offending)
    )
