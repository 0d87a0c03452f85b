"""Polos's Python SDK (`polos-sdk` on PyPI) against the service: its event calls, and what its
other calls (workflows, executions: out of this service's scope) get.

With no API key the client runs in the SDK's local mode (POLOS_LOCAL_MODE=True on a localhost
URL: no Authorization header), as a developer pointing it at a local service would.
"""

import asyncio
import os
from datetime import datetime, timezone

from harness import API_KEY, ARGS, BASE_URL, PROJECT, dump, error, run

if not API_KEY:
    os.environ["POLOS_LOCAL_MODE"] = "True"

from polos import AgentStreamHandle, ExecutionHandle, Polos, PolosClient, StreamResult, events  # noqa: E402
from polos.features.events import EventData, StreamEvent  # noqa: E402


async def take(it, n, timeout=10):
    """The first n items of an async iterator."""
    out = []

    async def go():
        async for x in it:
            out.append(x)
            if len(out) == n:
                return

    await asyncio.wait_for(go(), timeout)
    return out


async def main():
    client = PolosClient(api_url=BASE_URL, api_key=API_KEY or None, project_id=PROJECT)
    topic = ARGS["topic"]
    out = {}

    # publish / batch_publish: sequence ids as ints
    first = await events.publish(client, topic, EventData(event_type="created", data={"n": 1}))
    batch = await events.batch_publish(client, topic, [EventData(event_type="updated", data={"n": 2}), EventData(data={"n": 3})],
                                       execution_id="exec-py-1", root_execution_id="exec-py-1")
    out["publish"] = {"first": first, "batch": batch, "types": [type(first).__name__] + [type(s).__name__ for s in batch]}

    # stream_topic replay from a sequence (exclusive), then live
    replay = events.stream_topic(client, topic, last_sequence_id=1)
    got = await take(replay, 2)
    assert all(isinstance(e, StreamEvent) for e in got)
    out["replay"] = [dump(e) for e in got]
    live_task = asyncio.ensure_future(take(events.stream_topic(client, topic, last_sequence_id=3), 1))
    await asyncio.sleep(0.3)
    await events.publish(client, topic, EventData(event_type="live", data={"n": 4}))
    out["live"] = [dump(e) for e in await live_task]

    # stream_topic with no cursor: the SDK sends last_timestamp=now, so only newer events come
    await asyncio.sleep(0.05)
    fresh_task = asyncio.ensure_future(take(events.stream_topic(client, topic), 1))
    await asyncio.sleep(0.3)
    await events.publish(client, topic, EventData(event_type="fresh", data={"n": 5}))
    out["from_now"] = [e.sequence_id for e in await fresh_task]

    # stream_topic from a timestamp: events created after it
    mark = datetime.now(timezone.utc)
    await asyncio.sleep(0.05)
    await events.publish(client, topic, EventData(event_type="after-mark", data={"n": 6}))
    out["from_timestamp"] = [e.sequence_id for e in await take(events.stream_topic(client, topic, last_timestamp=mark), 1)]

    # resume() publishes to workflow/{workflow_id}/{run_id}; stream_workflow reads that topic and
    # stops by itself at the run's finish event
    wf, run_id = ARGS["workflow_id"], ARGS["run_id"]
    await client.resume(wf, run_id, "approval", {"approved": True})
    polos = Polos(project_id=PROJECT, api_url=BASE_URL, api_key=API_KEY or None)
    await polos.resume(wf, run_id, "second", {"approved": False})
    wf_topic = f"workflow/{wf}/{run_id}"
    await events.publish(client, wf_topic, EventData(event_type="text_delta", data={"content": "Hello, "}))
    await events.publish(client, wf_topic, EventData(event_type="text_delta", data={"content": "world"}))
    await events.publish(client, wf_topic, EventData(event_type="agent_finish", data={
        "_metadata": {"execution_id": run_id},
        "result": {"agent_run_id": run_id, "result": "Hello, world", "result_schema": None, "tool_results": [], "total_steps": 2,
                   "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}}))
    streamed = []

    async def whole():
        async for e in events.stream_workflow(client, wf, run_id, last_sequence_id=0):
            streamed.append(e)

    await asyncio.wait_for(whole(), 10)  # ends on its own at agent_finish
    out["stream_workflow"] = [dump(e) for e in streamed]

    # Agent result streams: StreamResult (what Agent.stream returns) and AgentStreamHandle
    handle = ExecutionHandle(id=run_id, workflow_id=wf, root_workflow_id=wf, root_execution_id=run_id,
                             created_at="2000-01-01T00:00:00Z")
    result = StreamResult(handle, client)
    out["agent_text"] = await asyncio.wait_for(result.text(), 10)
    final = await asyncio.wait_for(result.result(), 10)
    out["agent_result"] = dump(final)
    every = []

    async def all_events():
        async for e in result.events:
            every.append(e.event_type)

    await asyncio.wait_for(all_events(), 10)
    out["agent_events"] = every
    out["agent_handle"] = [e.event_type for e in await take(AgentStreamHandle(client, run_id, wf, run_id, "2000-01-01T00:00:00Z"), 5)]

    # Out of scope here (Polos's orchestrator: executions, workflows): what the SDK gets
    for name, call in [("get_execution", client.get_execution("exec-py-1")), ("cancel_execution", client.cancel_execution("exec-py-1")),
                       ("invoke", client.invoke("some-workflow", {"x": 1}))]:
        try:
            out[name] = {"returned": dump(await call)}
        except Exception as e:  # noqa: BLE001
            out[name] = error(e)
    return out


run(main)
