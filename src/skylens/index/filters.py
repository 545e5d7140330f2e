"""Search filters as LanceDB SQL: bbox (WGS84, antimeridian-aware), time range, source path.

Every value is quoted or checked here (finite floats, ISO times, escaped LIKE patterns), so no
user text reaches the SQL unescaped.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from skylens.errors import InputError


def sql_str(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def sql_float(x: float, what: str) -> str:
    x = float(x)
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {x}")
    return repr(x)


def naive_utc(t: datetime | str | None, what: str) -> datetime | None:
    """Datetime (or ISO text) as naive UTC; naive input is taken to be UTC already."""
    if t is None:
        return None
    if isinstance(t, str):
        try:
            t = datetime.fromisoformat(t)
        except ValueError:
            raise InputError(f"{what}: '{t}' is not an ISO 8601 date/time") from None
    if not isinstance(t, datetime):
        raise InputError(f"{what}: expected a datetime, got {type(t).__name__}")
    if t.tzinfo is not None:
        try:
            t = t.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-14:00 in UTC
            t = datetime.min if t.year == 1 else datetime.max  # the calendar's end: no bound
    return t


def sql_time(t: datetime) -> str:
    """A naive UTC datetime as a SQL timestamp literal (four-digit year, even for year 1)."""
    return f"timestamp '{t.year:04d}-{t:%m-%d %H:%M:%S.%f}'"


def like_pattern(source: str) -> str:
    """A path prefix or glob (``*``, ``?``) as a SQL LIKE pattern (``\\`` escapes)."""
    out = []
    for ch in source:
        if ch in "%_\\":
            out.append("\\" + ch)
        elif ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        else:
            out.append(ch)
    pattern = "".join(out)
    if not any(ch in source for ch in "*?"):
        pattern += "%"  # a plain prefix
    return pattern


def where_clause(
    bbox: tuple[float, float, float, float] | None,
    time_range: tuple[datetime | None, datetime | None] | None,
    source: str | None,
) -> str | None:
    """The SQL ``WHERE`` of a search's filters, or None without any.

    Args: as for ``ChipIndex.search``.

    Raises:
        InputError: a bbox that is not (W, S, E, N) degrees, a time range that ends first.
    """
    clauses = []
    if bbox is not None:
        try:
            w, s, e, n = (float(x) for x in bbox)
        except (TypeError, ValueError):
            raise InputError(f"bbox must be (W, S, E, N) degrees, got {bbox!r}") from None
        if not (-90 <= s <= n <= 90 and -180 <= w <= 180 and -180 <= e <= 180):
            raise InputError(
                f"bbox {bbox!r} is not (W, S, E, N) degrees with -90 <= S <= N <= 90 and "
                "-180 <= W, E <= 180"
            )
        lat = f"lat_max >= {sql_float(s, 'S')} AND lat_min <= {sql_float(n, 'N')}"
        if w <= e:
            lon = f"lon_max >= {sql_float(w, 'W')} AND lon_min <= {sql_float(e, 'E')}"
        else:  # crosses the antimeridian: [W, 180] or [-180, E]
            lon = f"(lon_max >= {sql_float(w, 'W')} OR lon_min <= {sql_float(e, 'E')})"
        clauses.append(f"{lat} AND {lon}")
    if time_range is not None:
        after, before = time_range
        after = naive_utc(after, "time range start")
        before = naive_utc(before, "time range end")
        if after and before and after > before:
            raise InputError(f"time range starts ({after}) after it ends ({before})")
        if after:
            clauses.append(f"acquired >= {sql_time(after)}")
        if before:
            clauses.append(f"acquired <= {sql_time(before)}")
    if source:
        clauses.append(f"path LIKE {sql_str(like_pattern(str(source)))}")
    return " AND ".join(f"({c})" for c in clauses) if clauses else None
