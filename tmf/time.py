"""TMF641 date-times: RFC 3339 in UTC (`Z`); a date-only value is that day's midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime

from serviceorders.support.isotime import iso


def tmf_time(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # stored before inputs had to say (UTC by convention)
            value = value.replace(tzinfo=UTC)
        return iso(value)
    return f"{value.isoformat()}T00:00:00Z"
