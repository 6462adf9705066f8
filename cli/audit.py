"""The audit commands: `audit checkpoint | anchor | verify | export | keygen | public-key |
rotate-key` (docs/audit.md)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import click
from serviceorders.cli.main import Context, OneLineError, main, refusals
from serviceorders.support import isotime

if TYPE_CHECKING:
    from serviceorders.audit.anchors import Anchor
    from serviceorders.audit.report import Report


@main.group()
def audit() -> None:
    """Tamper evidence: hash chains, checkpoints, anchors and offline export."""


def _require_tables(db: Any) -> None:
    if not db.table_exists("audit_checkpoint"):
        raise click.UsageError("the database has no audit tables: run `serviceorders db init`")


def _bar(total: int | None, label: str, unit: str = "ev") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=label, file=sys.stderr, dynamic_ncols=True)


# Where an export goes (`anchor`, `export`).
OUTPUT = click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file (default: stdout).",
)


@audit.command("checkpoint")
@click.pass_obj
@refusals
def audit_checkpoint(obj: Context) -> None:
    """Checkpoint the chain heads now (nothing new since the latest: nothing is written).

    Prints the checkpoint as JSON on stdout: store it outside the database as an anchor."""
    from serviceorders.audit.checkpoints import AuditError, create_checkpoint
    from serviceorders.bootstrap import open_read_db

    settings = obj.settings
    db = open_read_db(settings)
    try:
        _require_tables(db)
        try:
            checkpoint = create_checkpoint(
                db, key=settings.audit_hmac_key, signing_key=settings.signing_key()
            )
        except AuditError as e:
            click.echo(f"refused: {e}", err=True)
            sys.exit(1)
    finally:
        db.close()
    if checkpoint is None:
        click.echo(
            "no checkpoint: the store is empty (or another process is checkpointing)", err=True
        )
        return
    state = "created" if checkpoint.fresh else "nothing new since"
    click.echo(
        f"{state} checkpoint {checkpoint.seq}: position {checkpoint.position}, "
        f"{checkpoint.order_count} orders, {len(checkpoint.changes)} changed heads, "
        f"root {checkpoint.root[:16]}, {_signed(checkpoint)}",
        err=True,
    )
    click.echo(json.dumps(checkpoint.to_json(), indent=2))
    if settings.audit_anchor:
        _anchor_checkpoint(settings, checkpoint)


def _anchor_checkpoint(settings: Any, checkpoint: Any) -> None:
    """Append the checkpoint, and those the anchor missed before it, to
    SERVICEORDERS_AUDIT_ANCHOR; exit 1 when the anchor cannot be written (the checkpoint
    stays recorded: the next `audit checkpoint` or checkpointer round appends it)."""
    from serviceorders.audit.anchors import AnchorError
    from serviceorders.bootstrap import audit_anchor, open_read_db

    anchor = audit_anchor(settings, settings.audit_anchor)
    db = open_read_db(settings)
    try:
        done = anchor.catch_up(db, checkpoint)
    except AnchorError as e:
        seqs = e.seqs or (checkpoint.seq,)
        which = f"checkpoint {seqs[0]}" if len(seqs) == 1 else f"checkpoints {seqs[0]}..{seqs[-1]}"
        click.echo(f"error: {which} recorded but not anchored: {e}", err=True)
        sys.exit(1)
    finally:
        anchor.close()
        db.close()
    if done:
        click.echo(
            f"anchored checkpoint(s) {', '.join(map(str, done))} to {anchor.description}",
            err=True,
        )


def _signed(checkpoint: Any) -> str:
    how = []
    if checkpoint.public_key:
        how.append(f"signed by key {checkpoint.public_key[:16]}")
    if checkpoint.hmac:
        how.append("HMAC")
    return " + ".join(how) if how else "unsigned"


@audit.command("anchor")
@click.option(
    "--all", "all_checkpoints", is_flag=True, help="Every checkpoint, not only the latest."
)
@OUTPUT
@click.pass_obj
@refusals
def audit_anchor(obj: Context, all_checkpoints: bool, output: Path | None) -> None:
    """Export the latest checkpoint (or all) as JSON, to keep outside the database
    (WORM bucket, ticket, e-mail); `audit verify --anchor FILE` checks the store against it."""
    from serviceorders.audit.checkpoints import export_checkpoints
    from serviceorders.bootstrap import open_read_db

    db = open_read_db(obj.settings)
    try:
        _require_tables(db)
        data = export_checkpoints(db, all_checkpoints=all_checkpoints)
    finally:
        db.close()
    if not data["checkpoints"]:
        click.echo("no checkpoint yet: run `serviceorders audit checkpoint`", err=True)
        sys.exit(1)
    text = json.dumps(data, indent=2) + "\n"
    if output:
        output.write_text(text, "utf-8")
        click.echo(f"wrote {len(data['checkpoints'])} checkpoint(s) to {output}", err=True)
    else:
        click.echo(text, nl=False)


def _anchor_option(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> Path | Anchor | None:
    """`--anchor FILE | file:FILE | kafka:TOPIC` -> the file's path, or the topic's anchor
    (on the engine's Kafka: KAFKA_BOOTSTRAP_SERVERS and its TLS / SASL settings)."""
    if value is None:
        return None
    if value.startswith("kafka:"):
        from serviceorders.bootstrap import audit_anchor

        settings = ctx.find_object(Context).config  # type: ignore[union-attr]
        if not settings.kafka_bootstrap_servers:
            raise click.BadParameter(f"{value}: KAFKA_BOOTSTRAP_SERVERS is not set", ctx, param)
        try:
            return audit_anchor(settings, value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx, param) from None
    from serviceorders.audit.anchors import AnchorError
    from serviceorders.audit.verify import load_anchor

    path = Path(value.removeprefix("file:")).expanduser()
    if not path.is_file():
        raise click.BadParameter(f"{value}: no such file", ctx, param)
    try:
        load_anchor(path)  # refused now, as bad input, when it is not an anchor
    except AnchorError as e:
        raise click.BadParameter(str(e), ctx, param) from None
    return path


@audit.command("verify")
@click.option(
    "--anchor",
    metavar="FILE|kafka:TOPIC",
    callback=_anchor_option,
    help="Checkpoints kept outside the database, each must match the stored one: the "
    "anchor SERVICEORDERS_AUDIT_ANCHOR appends to (a file, or kafka:TOPIC, read from its "
    "start to its end on the engine's Kafka), `audit anchor` / `audit checkpoint` output, "
    "or an export.",
)
@click.option(
    "--file",
    "file_",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Verify an `audit export` JSONL file offline (no database).",
)
@click.option(
    "--unsigned-up-to",
    type=int,
    default=0,
    metavar="SEQ",
    help="Accept checkpoints up to SEQ without a signature: made before signing was "
    "configured (no Ed25519 signature although --public-key pins a key, or no HMAC although "
    "SERVICEORDERS_AUDIT_HMAC_KEY is set).",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="KEY",
    help="A trusted checkpoint signing key (repeatable): a PEM public key file, a file "
    "holding its 64 hex digits, or the hex itself. Unpinned, the first key in the chain is "
    "trusted (noted).",
)
@click.option("--no-snapshots", is_flag=True, help="Skip the snapshot check.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON on stdout.")
@click.option(
    "--strict",
    is_flag=True,
    help="Exit 1 on any warning too (a log never checkpointed), even when no problem is found.",
)
@click.pass_obj
@refusals
def audit_verify(
    obj: Context,
    anchor: Path | Anchor | None,
    file_: Path | None,
    unsigned_up_to: int,
    public_keys: tuple[str, ...],
    no_snapshots: bool,
    as_json: bool,
    strict: bool,
) -> None:
    """Verify every hash chain, checkpoint and snapshot; exit 1 listing each problem.

    Warnings (what could not be checked at all: a log never checkpointed) and notes (what
    was not checked) are printed before the verdict.

    \b
    Exit status:
      0  OK: no problem (warnings may be printed, unless --strict)
      1  problems found (each listed), or any warning with --strict
      2  usage error (bad option)
      3  the database cannot be read
    """
    from serviceorders.audit.anchors import AnchorError

    try:
        report = _verify_report(obj, anchor, file_, unsigned_up_to, public_keys, no_snapshots)
    except AnchorError as e:  # the anchor cannot be read (a broker down): the message says it
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    _print_report(report, as_json=as_json, strict=strict)


def _verify_report(
    obj: Context,
    anchor: Path | Anchor | None,
    file_: Path | None,
    unsigned_up_to: int,
    public_keys: tuple[str, ...],
    no_snapshots: bool,
) -> Report:
    from serviceorders.audit.verify import verify, verify_file

    pinned = _public_keys(public_keys)
    # An export is verified offline: no database is probed, opened or created.
    settings = obj.config if file_ is not None else obj.settings
    key = settings.audit_hmac_key
    if file_ is not None:
        lines = sum(1 for _ in file_.open("rb"))
        with _bar(lines, "verify", unit="line") as bar:
            report = verify_file(
                file_,
                key=key,
                anchor=anchor,
                unsigned_up_to=unsigned_up_to,
                progress=bar.update,
                public_keys=pinned,
            )
    else:
        from serviceorders.audit.store import Store
        from serviceorders.bootstrap import open_read_db

        db = open_read_db(settings)
        try:
            _require_tables(db)
            with _bar(Store(db).count(), "verify") as bar:
                report = verify(
                    db,
                    key=key,
                    anchor=anchor,
                    progress=bar.update,
                    unsigned_up_to=unsigned_up_to,
                    snapshots=not no_snapshots,
                    public_keys=pinned,
                )
        finally:
            db.close()
    return report


def _print_report(report: Report, *, as_json: bool, strict: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(
            f"{report.orders} orders, {report.events} events, {report.checkpoints} "
            f"checkpoints, {report.snapshots} snapshots, {report.seen_heads} heads read "
            "by the projector checked"
        )
        for line in report.lines():
            click.echo(line)
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        for note in report.notes:
            click.echo(f"note: {note}")
        if not report.ok:
            click.echo(
                f"FAILED: {len(report.broken_orders())} broken order(s), "
                f"{len(report.checkpoint_problems)} checkpoint problem(s), "
                f"{len(report.snapshot_problems)} bad snapshot(s)"
            )
        elif strict and report.warnings:
            click.echo(f"FAILED (--strict): {len(report.warnings)} warning(s)")
        else:
            click.echo("OK")
    sys.exit(0 if report.ok and not (strict and report.warnings) else 1)


def _public_keys(values: tuple[str, ...]) -> list[str]:
    from serviceorders.support.signing import KeyFileError, parse_public_key

    try:
        return [parse_public_key(v) for v in values]
    except KeyFileError as e:
        raise OneLineError(f"--public-key {e}") from None


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = isotime.parse(value)
    except ValueError:
        raise click.BadParameter(
            f"not an ISO 8601 date or time: {value!r}", param_hint="--since"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@audit.command("export")
@click.option("--order", "order_id", type=click.UUID, help="Only this order's events.")
@click.option(
    "--since", metavar="T", help="Only events at or after T (ISO 8601; UTC unless given)."
)
@OUTPUT
@click.pass_obj
@refusals
def audit_export(
    obj: Context, order_id: UUID | None, since: str | None, output: Path | None
) -> None:
    """Export stored events exactly as stored, and the checkpoints, as JSON lines for an
    auditor (`serviceorders audit verify --file F`, no database needed)."""
    from serviceorders.audit.export import export
    from serviceorders.audit.store import Store
    from serviceorders.bootstrap import open_read_db

    at = _since(since)
    db = open_read_db(obj.settings)
    try:
        _require_tables(db)
        total = None if order_id else Store(db).count()
        out = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            with _bar(total, "export") as bar:
                summary = export(db, out, order_id=order_id, since=at, progress=bar.update)
        finally:
            if output:
                out.close()
    finally:
        db.close()
    scope = "complete" if summary["complete"] else "partial"
    click.echo(
        f"exported {summary['events']} events, {summary['checkpoints']} checkpoints and "
        f"{summary['seen_heads']} heads read by the projector ({scope}) up to position "
        f"{summary['position']}" + (f" to {output}" if output else ""),
        err=True,
    )


@audit.command("erase")
@click.option(
    "--customer",
    "customer_id",
    required=True,
    metavar="ID",
    help="The customer (related party id with role customer).",
)
@click.option("--actor", required=True, help="Who erases (recorded).")
@click.option("--reason", default=None, help="Why (recorded), e.g. the request's reference.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
@refusals
def audit_erase(obj: Context, customer_id: str, actor: str, reason: str | None, yes: bool) -> None:
    """Erase a customer's personal data: delete its key (every value sealed for it reads
    `[erased]` from then on), record the erasure, drop its orders' snapshots, its dead
    letters and its orders' refusal announcements, and rebuild the read models. The events
    and their hash chains are unchanged (docs/audit.md, "What erasure reaches")."""
    from serviceorders.audit.erasure import erase_customer
    from serviceorders.bootstrap import event_mapper, open_read_db
    from serviceorders.consumers.store import erase_intake_rows
    from serviceorders.projections.maintenance import rebuild
    from tqdm import tqdm

    if not yes:
        click.confirm(
            f"Erase the personal data of customer {customer_id!r}? This cannot be undone",
            abort=True,
            err=True,
        )
    db = open_read_db(obj.settings)
    try:
        with tqdm(unit="ev", desc="rebuild", file=sys.stderr, dynamic_ncols=True) as bar:
            done = erase_customer(
                db,
                customer_id,
                actor,
                reason,
                rebuild=lambda d: rebuild(d, event_mapper(), progress=bar.update),
                also=(erase_intake_rows,),
            )
    finally:
        db.close()
    click.echo(
        json.dumps(
            {
                "customer": customer_id,
                "orders": [str(o) for o in done.orders],
                "hadKey": done.had_key,
                "snapshotsDeleted": done.snapshots_deleted,
                "rowsDeleted": done.deleted,
            },
            indent=2,
        )
    )
    click.echo(
        f"erased the personal data of {customer_id} ({len(done.orders)} order(s)); "
        "read models rebuilt",
        err=True,
    )


# ------------------------------------------------------------------ signing keys
@audit.command("keygen")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new private key file (PKCS#8 PEM, mode 0600); never overwritten.",
)
def audit_keygen(output: Path) -> None:
    """Make a new Ed25519 key to sign checkpoints; prints its public key (hex) to publish.

    Point SERVICEORDERS_AUDIT_SIGNING_KEY at the file (a first key), or hand it to
    `audit rotate-key --new FILE` (a key replacing the configured one)."""
    from serviceorders.support.signing import generate, public_hex

    try:
        key = generate(output)
    except FileExistsError:
        raise OneLineError(f"{output} exists: refusing to overwrite a key file") from None
    except OSError as e:
        raise OneLineError(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(public_hex(key))
    click.echo(
        f"wrote a new Ed25519 private key to {output} (mode 0600); its public key is above: "
        "publish it to the auditors",
        err=True,
    )


@audit.command("public-key")
@click.option("--pem", is_flag=True, help="As a PEM public key instead of hex.")
@click.pass_obj
def audit_public_key(obj: Context, pem: bool) -> None:
    """Print the public key of SERVICEORDERS_AUDIT_SIGNING_KEY (hex, or --pem): what
    auditors pin with `audit verify --public-key`."""
    from serviceorders.support.signing import public_hex, public_pem

    key = obj.config.signing_key()
    if key is None:
        raise OneLineError("no SERVICEORDERS_AUDIT_SIGNING_KEY: checkpoints are not signed")
    click.echo(public_pem(key).rstrip("\n") if pem else public_hex(key))


@audit.command("rotate-key")
@click.option(
    "--new",
    "new_file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The new private key file (`audit keygen -o FILE`).",
)
@click.pass_obj
@refusals
def audit_rotate_key(obj: Context, new_file: Path) -> None:
    """Record a checkpoint signed by the new key and endorsed by the configured one
    (SERVICEORDERS_AUDIT_SIGNING_KEY, which must have signed the latest signed checkpoint);
    then point SERVICEORDERS_AUDIT_SIGNING_KEY at the new file and restart.

    Prints the checkpoint as JSON on stdout."""
    from serviceorders.audit.checkpoints import AuditError, rotate_key
    from serviceorders.bootstrap import open_read_db
    from serviceorders.support.signing import KeyFileError, load_private_key, public_hex

    try:
        new_key = load_private_key(new_file)
    except KeyFileError as e:
        raise OneLineError(str(e)) from None
    settings = obj.settings
    current = settings.signing_key()
    if current is None:
        raise OneLineError(
            "no SERVICEORDERS_AUDIT_SIGNING_KEY: the current key must endorse the new one "
            "(with no key yet, point SERVICEORDERS_AUDIT_SIGNING_KEY at the new file instead)"
        )
    db = open_read_db(settings)
    try:
        _require_tables(db)
        try:
            checkpoint = rotate_key(db, new_key, current, key=settings.audit_hmac_key)
        except AuditError as e:
            click.echo(f"refused: {e}", err=True)
            sys.exit(1)
    finally:
        db.close()
    click.echo(
        f"created checkpoint {checkpoint.seq}: signed by the new key {public_hex(new_key)}, "
        f"endorsed by the current key {public_hex(current)}",
        err=True,
    )
    click.echo(
        f"now point SERVICEORDERS_AUDIT_SIGNING_KEY at {new_file} and restart the "
        "processes that checkpoint (serve); publish the new public key to the auditors",
        err=True,
    )
    click.echo(json.dumps(checkpoint.to_json(), indent=2))
    if settings.audit_anchor:
        _anchor_checkpoint(settings, checkpoint)
