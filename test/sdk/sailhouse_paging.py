"""Sailhouse's Python SDK reading a subscription's event list page by page (get_events with
limit/offset) when the service cuts pages at RESPONSE_BATCH_BYTES.

SDK_ARGS: {"topic", "subscription", "events": n, "event_bytes": b, "limit": l}. Creates the
subscription (a pull), publishes n events of about b bytes, then pages as a client of this API
does: offset grows by the page's `limit` (the page's size when the service cut it short) until a
page holds fewer events than its `limit`. Returns each page's size and every event's data.
"""

from __future__ import annotations

from typing import Any

from harness import API_KEY, ARGS, BASE_URL, run
from sailhouse import SailhouseClient


async def main() -> dict[str, Any]:
    client = SailhouseClient(API_KEY, base_url=BASE_URL)
    client.BASE_URL = BASE_URL  # some of the SDK's calls use the class attribute, not base_url
    topic, sub = ARGS["topic"], ARGS["subscription"]
    await client.pull(topic, sub)  # creates the subscription: it sees events from now on
    blob = "e" * int(ARGS["event_bytes"])
    for i in range(int(ARGS["events"])):
        await client.publish(topic, {"n": i, "blob": blob})
    seen: list[int] = []
    pages: list[dict[str, int]] = []
    offset = 0
    while True:
        page = await client.get_events(topic, sub, limit=int(ARGS["limit"]), offset=offset)
        pages.append({"offset": page.offset, "limit": page.limit, "events": len(page.events)})
        seen.extend(e.data["n"] for e in page.events)
        if len(page.events) < page.limit or len(pages) > 1000:
            break
        offset += page.limit
    return {"seen": seen, "pages": pages}


run(main)
