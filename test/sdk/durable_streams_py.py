"""The Durable Streams Python client (PyPI `durable-streams`), sync or async, as an app uses it.

Driven by test/clients/python.test.ts through test/support/python-sdk.ts. SDK_ARGS:
  {"url": <stream URL>, "mode": "sync" | "async", "live": <messages to read live>}
Creates a JSON stream, appends 20 messages (10, then 10), reads them back (catch-up from the
start, and resumed from the offset after the first 10), prints {"ready": ...}, then reads
`live` messages over SSE from the tail (the test appends them) and prints {"live": [...]}.
"""
import asyncio
import json
import os

from durable_streams import AsyncDurableStream, DurableStream, astream, stream

ARGS = json.loads(os.environ["SDK_ARGS"])
URL = ARGS["url"]
LIVE = ARGS["live"]


def out(**kv):
    print(json.dumps(kv), flush=True)


def run_sync():
    handle = DurableStream.create(URL, content_type="application/json")
    first = None
    for i in range(20):
        res = handle.append({"i": i, "text": f"message {i}"})
        if i == 9:
            first = res.next_offset
    with stream(URL, live=False) as r:
        everything = [m["i"] for m in r.iter_json()]
        tail = r.offset
    with stream(URL, offset=first, live=False) as r:
        resumed = [m["i"] for m in r.iter_json()]
    out(ready=True, catchup=everything, resumed=resumed)
    seen = []
    with stream(URL, offset=tail, live="sse") as r:
        for m in r.iter_json():
            seen.append(m["i"])
            if len(seen) >= LIVE:
                break
    handle.close()
    out(live=seen)


async def run_async():
    handle = await AsyncDurableStream.create(URL, content_type="application/json")
    first = None
    for i in range(20):
        res = await handle.append({"i": i, "text": f"message {i}"})
        if i == 9:
            first = res.next_offset
    async with astream(URL, live=False) as r:
        everything = [m["i"] async for m in r.iter_json()]
        tail = r.offset
    async with astream(URL, offset=first, live=False) as r:
        resumed = [m["i"] async for m in r.iter_json()]
    out(ready=True, catchup=everything, resumed=resumed)
    seen = []
    async with astream(URL, offset=tail, live="sse") as r:
        async for m in r.iter_json():
            seen.append(m["i"])
            if len(seen) >= LIVE:
                break
    await handle.aclose()
    out(live=seen)


if ARGS["mode"] == "async":
    asyncio.run(run_async())
else:
    run_sync()
