"""The free text that commands bring, sealed before the aggregate sees it (docs/audit.md,
"Erasing personal data"): one table, applied by the application's one door
(`UnitOfWork.apply`), instead of a line per handler.

A reason, a note, information asked for or given may name a person, a phone number, an
address: each is sealed under the order's scope (`privacy.scope_of`), so that erasing the
customer makes it unreadable like the names. Only non-blank text is sealed, after
stripping (the domain strips it too), except a note (`AS_SENT`), kept and sealed as sent
(leading and trailing whitespace included); a blank or missing text is left as it is, so
that the domain's own "needs a reason" check still refuses it. A text that looks like a sealed
value (`pii:1:...`) is refused: stored as it is, it would read `[erased]`.

The content of a new order or a revision (descriptions, notes on the order, the attributes
kept as sent) is sealed by the application's `_seal_new` / `_seal_change` through
privacy.py's `map_*` functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from . import commands as cmd
from .errors import InvalidCommand
from .privacy import ERASED, TOKEN_PREFIX, is_sealed

# command class -> the names of its free-text fields (a `str | None`, or a sequence of them:
# `Revise.notes`; `ChangeItemStates.changes` holds each change's `reason`).
COMMAND_TEXTS: dict[type[Any], tuple[str, ...]] = {
    cmd.Approve: ("note",),
    cmd.Reject: ("reason",),
    cmd.Hold: ("reason",),
    cmd.Resume: ("note",),
    cmd.RequestInformation: ("information",),
    cmd.ProvideInformation: ("information",),
    cmd.ChangeItemStates: ("changes",),
    cmd.ReachPointOfNoReturn: ("note",),
    cmd.Revise: ("notes",),
    cmd.RequestCancellation: ("reason",),
    cmd.RequestCancellationInformation: ("information",),
    cmd.ProvideCancellationInformation: ("information",),
    cmd.ApproveCancellation: ("note",),
    cmd.DenyCancellation: ("reason",),
    cmd.Cancel: ("reason",),
    cmd.ApproveProposal: ("note",),
    cmd.RefuseProposal: ("reason",),
    cmd.WithdrawProposal: ("reason",),
    cmd.AddNote: ("text",),
    cmd.Delete: ("reason",),
}
# The texts kept exactly as sent (a note's text, as the notes of a creation): sealed
# unstripped. Every other text is stripped first.
AS_SENT: frozenset[tuple[type[Any], str]] = frozenset(
    {(cmd.Revise, "notes"), (cmd.AddNote, "text")}
)
LOOKALIKE = (
    f"a text may not start with {TOKEN_PREFIX!r}: that is how sealed personal data is stored"
)


def seal_text(seal: Callable[[str], str], value: str | None, *, strip: bool = True) -> str | None:
    """A free text sealed: stripped (unless `strip` is false: sealed as sent), then sealed;
    None or a blank text: as is. A text that looks like a sealed value is refused (stored as
    it is, it would read `[erased]`)."""
    if value is None:
        return value
    stripped = value.strip()
    if is_sealed(stripped):
        raise InvalidCommand(LOOKALIKE)
    if not stripped:
        return value
    return seal(stripped if strip else value)


def _sealed_field(seal: Callable[[str], str], value: Any, strip: bool = True) -> Any:
    if value is None or isinstance(value, str):
        return seal_text(seal, value, strip=strip)
    if isinstance(value, tuple | list):
        return tuple(_sealed_field(seal, v, strip) for v in value)
    if dataclasses.is_dataclass(value) and hasattr(value, "reason"):  # an ItemStateChange
        reason = getattr(value, "reason", None)
        sealed = seal_text(seal, reason)
        return value if sealed is reason else dataclasses.replace(value, reason=sealed)  # type: ignore[type-var]
    return value


def seal_command(command: Any, seal: Callable[[str], str], fallback: str | None = None) -> Any:
    """`command` with its free-text fields sealed (the same command when it has none).

    `fallback`: the text the aggregate would record when the command brings none (a
    `Cancel` without a reason records the cancellation request's reason, which the loaded
    order holds revealed): it is sealed into the command, so that no new event copies it
    in plain text."""
    names = COMMAND_TEXTS.get(type(command))
    if not names:
        return command
    if (
        isinstance(command, cmd.Cancel)
        and not command.reason
        and fallback
        and fallback != ERASED
        and not is_sealed(fallback)
    ):
        command = dataclasses.replace(command, reason=fallback)
    changes = {}
    for name in names:
        value = getattr(command, name)
        sealed = _sealed_field(seal, value, (type(command), name) not in AS_SENT)
        if sealed is not value and sealed != value:
            changes[name] = sealed
    return dataclasses.replace(command, **changes) if changes else command
