"""The one ISO 8601 / RFC 3339 time helper (issue 16: one, not ten).

Every time on the wire (TMF641 JSON, notifications, the audit export, the CLI's JSON) is
written by `iso` and read by `parse`: UTC is spelled `Z`, any other offset is kept as it is;
a date alone is a date. Python 3.11's `fromisoformat` reads `Z` itself.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

__all__ = ["iso", "iso_or_none", "now_iso", "parse", "utc_iso"]


def iso(value: datetime | date) -> str:
    """`2026-12-06T07:15:00Z` for an aware UTC time (other offsets kept as they are); a
    date as `2026-12-06`."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value.isoformat()


def iso_or_none(value: datetime | date | None) -> str | None:
    return None if value is None else iso(value)


def utc_iso(value: datetime) -> str:
    """The moment in UTC, spelled with `Z` (an aware time of any offset is converted)."""
    return iso(value.astimezone(UTC))


def now_iso() -> str:
    """Now, in UTC, with `Z`."""
    return iso(datetime.now(UTC))


def parse(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 date-time (`Z` or an offset; naive if it has neither).
    Raises ValueError on anything else."""
    return datetime.fromisoformat(text)
