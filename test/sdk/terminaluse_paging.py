"""TerminalUse's Python SDK paging through lists the service bounds in bytes (RESPONSE_BATCH_BYTES).

SDK_ARGS: {"tasks": n, "params_bytes": b, "messages": m, "message_bytes": k, "limit": l}.
Creates n tasks whose params hold about b bytes, then lists them the way the SDK pages
(tasks.list with limit/page_number, a short page ends it): first with `limit` (which cannot fit,
so the service refuses it with 422 naming the limit that fits), then with that limit. Sends m
messages of k bytes to one task and reads them back with messages_v2's pager both ways, and one
message by id. Returns what it saw for the test to compare.
"""

from __future__ import annotations

import re
from typing import Any

from harness import ARGS, BASE_URL, dump, error, run
from terminaluse import TerminalUse
from terminaluse.errors.unprocessable_entity_error import UnprocessableEntityError


def all_pages(c: TerminalUse, limit: int) -> list[str]:
    """Every task, paged as a client of this API does: page_number 1, 2, ... until a short page."""
    ids: list[str] = []
    page = 1
    while True:
        got = c.tasks.list(limit=limit, page_number=page, order_by="created_at", order_direction="asc")
        ids.extend(t.id for t in got)
        if len(got) < limit:
            return ids
        page += 1


def main() -> dict[str, Any]:
    c = TerminalUse(base_url=BASE_URL)
    r: dict[str, Any] = {}
    blob = "p" * int(ARGS["params_bytes"])
    r["created"] = [c.tasks.create(agent_name="acme/pager", name=f"t{i:03d}", params={"i": i, "blob": blob}).id for i in range(int(ARGS["tasks"]))]

    try:
        c.tasks.list(limit=int(ARGS["limit"]), order_by="created_at", order_direction="asc")
        r["refused"] = None
    except UnprocessableEntityError as e:
        r["refused"] = {**error(e), "detail": dump(e.body)}
    fit = int(re.search(r"limit=(\d+)\)", str(r["refused"]["detail"]))[1]) if r["refused"] else int(ARGS["limit"])
    r["fit"] = fit
    r["listed"] = all_pages(c, fit)

    t = c.tasks.create(agent_name="acme/pager", name="chat")
    text = "m" * int(ARGS["message_bytes"])
    r["sent"] = [c.tasks.send_event(t.id, content={"type": "text", "text": f"{i:03d}{text}"}).id for i in range(int(ARGS["messages"]))]
    older = c.messages_v2.list(task_id=t.id, limit=100)
    r["first_page_size"] = len(older.response.data)
    r["older"] = [m.id for m in older]  # the SyncPager follows next_cursor
    r["newer"] = [m.id for m in c.messages_v2.list(task_id=t.id, direction="newer", limit=100)]
    r["one"] = dump(c.messages_v2.retrieve(r["sent"][3], task_id=t.id))
    return r


run(main)
