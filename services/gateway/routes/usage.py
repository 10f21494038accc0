"""The admin API's usage: requests and tokens of a range of days, grouped, as JSON or CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from contracts.errors import InvalidRequest
from services.gateway import usage

router = APIRouter(prefix="/v1/admin", tags=["admin"])
DAY_MS = 24 * 3600 * 1000


def _day_ms(value: str | None, name: str, default: dt.date) -> int:
    try:
        date = dt.date.fromisoformat(value) if value else default
    except ValueError:
        raise InvalidRequest(f"`{name}` must be a date, YYYY-MM-DD", param=name) from None
    return int(dt.datetime(date.year, date.month, date.day, tzinfo=dt.timezone.utc).timestamp() * 1000)


@router.get("/usage", response_model=None)
async def get_usage(
    request: Request,
    start: str | None = Query(None, description="First day (UTC), YYYY-MM-DD; default today."),
    end: str | None = Query(None, description="Last day (UTC), inclusive; default today."),
    group_by: str = Query("key,model,modality,day", description=f"Comma-separated, of {', '.join(usage.GROUPS)}."),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> dict[str, Any] | Response:
    today = dt.datetime.now(dt.timezone.utc).date()
    start_ms = _day_ms(start, "start", today)
    end_ms = _day_ms(end, "end", today) + DAY_MS
    if end_ms <= start_ms:
        raise InvalidRequest("`end` is before `start`", param="end")
    groups = tuple(g.strip() for g in group_by.split(",") if g.strip())
    if not groups or any(g not in usage.GROUPS for g in groups):
        raise InvalidRequest(f"`group_by` takes {', '.join(usage.GROUPS)}", param="group_by")
    rows = usage.summed(await usage.read(request.app.state.relay.bus, start_ms, end_ms), groups)
    if format == "csv":
        out = io.StringIO()
        columns = [*groups, *(["key_name"] if "key" in groups else []), "requests"]
        columns += ["prompt_tokens", "completion_tokens", "total_tokens"]
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv")
    return {"object": "list", "group_by": list(groups), "data": rows}
