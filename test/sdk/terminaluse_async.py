"""TerminalUse's async client (AsyncTerminalUse) against the service: the same task/event/message/stream
calls through the SDK's async transport, and how the SDK fails without a valid key.

SDK_ARGS: {"credential": "token" | "agent_api_key"}.
"""

from __future__ import annotations

import asyncio
from typing import Any

from harness import API_KEY, ARGS, BASE_URL, dump, run
from terminaluse import AsyncTerminalUse
from terminaluse.core.api_error import ApiError


def client(key: str) -> AsyncTerminalUse:
    if not key:
        return AsyncTerminalUse(base_url=BASE_URL)
    if ARGS.get("credential") == "agent_api_key":
        return AsyncTerminalUse(base_url=BASE_URL, agent_api_key=key)
    return AsyncTerminalUse(base_url=BASE_URL, token=key)


async def main() -> dict[str, Any]:
    c = client(API_KEY)
    r: dict[str, Any] = {}
    t = await c.tasks.create(agent_name="acme/async", name="async-task")
    r["created"] = dump(t)
    r["retrieved"] = dump(await c.tasks.retrieve(t.id))
    r["listed"] = [x.id for x in await c.tasks.list(agent_name="acme/async")]
    sent = await c.tasks.send_event(t.id, content={"type": "text", "text": "from async"})
    r["sent"] = dump(sent)
    r["events"] = [e.sequence_id for e in await c.events.list(task_id=t.id, agent_id=t.agents[0].id)]
    r["event"] = dump(await c.events.retrieve(sent.id))
    r["messages"] = [dump(m) async for m in await c.messages_v2.list(task_id=t.id)]

    parts: list[Any] = []

    async def read() -> None:
        async for p in c.tasks.stream(t.id):
            parts.append(p)
            if len(parts) == 5:
                return

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    await c.tasks.send_event(t.id, content={"type": "data", "data": {"type": "finish", "finishReason": "stop", "totalUsage": {"inputTokens": 3, "outputTokens": 5}}})
    await c.tasks.send_event(t.id, content={"type": "data", "data": {"type": "reasoning-start", "id": "r"}})
    await asyncio.wait_for(reader, 15)
    r["stream"] = [dump(p) for p in parts]
    r["canceled"] = (await c.tasks.cancel(t.id)).status

    # Credentials the service must refuse when it requires keys.
    for name, key in {"wrong_key": "not-a-key", "no_key": ""}.items():
        try:
            await client(key).tasks.retrieve(t.id)
            r[name] = None
        except ApiError as e:
            r[name] = {"status": e.status_code, "body": e.body}
    return r


if __name__ == "__main__":
    run(main)
