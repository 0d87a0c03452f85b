"""Sailhouse's Python SDK (`sailhouse` on PyPI) against the service: every call it offers.

The SDK builds its URLs from `self.BASE_URL` and ignores its `base_url` argument, so the documented
way to point it at this service is to set the attribute on the instance (`client.BASE_URL = url`).
"""

import asyncio

from harness import API_KEY, ARGS, BASE_URL, emit, error, run
from sailhouse import Event, GetEventsResponse, SailhouseClient, SailhouseError


async def main():
    client = SailhouseClient(API_KEY, base_url=BASE_URL)
    client.BASE_URL = BASE_URL
    topic, sub = ARGS["topic"], ARGS["subscription"]
    out = {}

    # pull on an unknown subscription creates it at the head: nothing to deliver yet
    out["first_pull"] = await client.pull(topic, sub)
    for i in range(3):
        await client.publish(topic, {"n": i}, metadata={"source": "python"} if i == 0 else None)
    got = await client.pull(topic, sub)
    assert isinstance(got, Event)
    out["pulled"] = {"id": got.id, "data": got.data, "types": {"id": type(got.id).__name__, "data": type(got.data).__name__}}
    await got.ack()  # POST .../events/{id}
    nacked = await client.pull(topic, sub)
    await client.nack_message(topic, sub, nacked.id)  # due again at once
    again = await client.pull(topic, sub)
    out["nack_redelivered"] = again.id == nacked.id and again.data == nacked.data
    await client.acknowledge_message(topic, sub, again.id)

    # subscribe(): the SDK's polling loop, stopped by the handler once the rest arrived
    seen = []

    async def handler(event):
        seen.append(event.data)
        await event.ack()
        if len(seen) == 1:
            raise asyncio.CancelledError

    try:
        await asyncio.wait_for(client.subscribe(topic, sub, handler, polling_interval=0.05), timeout=10)
    except asyncio.CancelledError:
        pass
    out["subscribed"] = seen
    out["after_subscribe_pull"] = await client.pull(topic, sub)

    page = await client.get_events(topic, sub, limit=2, offset=1, time_window="1h")
    assert isinstance(page, GetEventsResponse)
    out["page"] = {"offset": page.offset, "limit": page.limit, "data": [e.data for e in page.events],
                   "ids": [type(e.id).__name__ for e in page.events]}
    out["as_type"] = page.events[0].as_type(dict)

    # a scheduled send is held and returns at once
    from datetime import datetime, timedelta, timezone
    await client.publish(topic, {"later": True}, scheduled_time=datetime.now(timezone.utc) + timedelta(hours=1))

    # errors surface as SailhouseError with the status in the message
    try:
        await client.acknowledge_message(topic, sub, "no-such-event")
        out["unknown_ack"] = "accepted"
    except SailhouseError as e:
        out["unknown_ack"] = error(e)
    return out


run(main)
