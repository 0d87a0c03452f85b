"""TerminalUse's Python SDK (terminaluse on PyPI) against the service: every task/event/message/stream
call it offers, through its public client only (TerminalUse; AsyncTerminalUse in terminaluse_async.py).

SDK_ARGS: {"credential": "token" | "agent_api_key"} (how the key is handed to the SDK when there is one).
Protocol with the test (stdin/stdout): after creating the task the script emits {"task": {...}} and
waits for one stdin line (the test publishes events through other surfaces meanwhile); then it streams.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from harness import API_KEY, ARGS, BASE_URL, dump, emit, error, run
from terminaluse import TerminalUse
from terminaluse.core.api_error import ApiError
from terminaluse.errors.unprocessable_entity_error import UnprocessableEntityError


def client() -> TerminalUse:
    # The key goes where the SDK puts it: token= -> "Authorization: Bearer", agent_api_key= -> "x-agent-api-key".
    # auto_refresh_token stays at its default (it reads the CLI's stored login when there is one; there is none here).
    if not API_KEY:
        return TerminalUse(base_url=BASE_URL)
    if ARGS.get("credential") == "agent_api_key":
        return TerminalUse(base_url=BASE_URL, agent_api_key=API_KEY)
    return TerminalUse(base_url=BASE_URL, token=API_KEY)


def part(p: Any) -> dict[str, Any]:
    """A stream part as the SDK parsed it: its class, its typed fields, and the service's extra `event`."""
    d = dump(p)
    d["event"] = (p.model_extra or {}).get("event")
    return d


def take(stream: Any, n: int, out: list[Any], timeout: float = 15.0) -> None:
    """Reads n parts from an SDK stream iterator in a thread (the SDK's stream blocks while idle)."""

    def read() -> None:
        for p in stream:
            out.append(p)
            if len(out) >= n:
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)


def main() -> dict[str, Any]:
    c = client()
    r: dict[str, Any] = {}
    suffix = ARGS.get("suffix", "")
    t = c.tasks.create(agent_name="acme/helper", name=f"triage{suffix}", params={"repo": "x", "depth": 2})
    r["created"] = dump(t)
    emit({"task": {"id": t.id, "agent_id": t.agents[0].id}})
    sys.stdin.readline()  # the test publishes through other surfaces now

    r["retrieved"] = dump(c.tasks.retrieve(t.id, relationships="agents"))
    r["by_name"] = dump(c.tasks.retrieve_by_name(f"triage{suffix}"))
    other = c.tasks.create(agent_id="agent-7", name=f"other{suffix}")
    r["listed"] = [x.id for x in c.tasks.list(limit=10, order_direction="desc")]
    r["listed_by_agent"] = [x.id for x in c.tasks.list(agent_name="acme/helper", status=["IDLE", "RUNNING"])]
    r["listed_namespace"] = [x.id for x in c.tasks.list(namespace_id="acme")]
    r["listed_page2"] = [x.id for x in c.tasks.list(limit=1, page_number=2, order_by="created_at", order_direction="asc")]

    text = c.tasks.send_event(t.id, content={"type": "text", "text": "hello"}, idempotency_key="k-1")
    retry = c.tasks.send_event(t.id, content={"type": "text", "text": "hello again"}, idempotency_key="k-1")
    tool = c.tasks.send_event(t.id, content={"type": "data", "data": {"type": "tool-call", "toolCallId": "c1", "toolName": "ls", "input": {"dir": "/"}}})
    data = c.tasks.send_event(t.id, content={"type": "data", "data": {"step": 2}}, persist_message=False)
    r["sent"] = [dump(text), dump(tool), dump(data)]
    r["retry_is_original"] = retry.id == text.id and retry.sequence_id == text.sequence_id
    try:
        c.tasks.send_event(t.id, content={"type": "text", "text": "x"}, idempotency_key="")
    except UnprocessableEntityError as e:
        r["bad_send"] = {"status": e.status_code, "detail": dump(e.body)}

    agent = t.agents[0].id
    r["events"] = [dump(e) for e in c.events.list(task_id=t.id, agent_id=agent)]
    r["events_after_first"] = [e.sequence_id for e in c.events.list(task_id=t.id, agent_id=agent, last_processed_event_id=text.id, limit=2)]
    r["events_other_agent"] = [e.id for e in c.events.list(task_id=t.id, agent_id="someone-else")]
    r["event"] = dump(c.events.retrieve(tool.id))

    pager = c.messages_v2.list(task_id=t.id, limit=1)
    r["messages_first_page"] = dump(pager.response)
    r["messages_all"] = [dump(m) for m in pager]  # the SyncPager follows nextCursor
    r["messages_newer"] = [m.id for m in c.messages_v2.list(task_id=t.id, direction="newer")]
    r["message"] = dump(c.messages_v2.retrieve(text.id, task_id=t.id))
    r["message_missing"] = c.messages_v2.retrieve("nope", task_id=t.id)

    # The stream: everything stored so far (this SDK's events and the test's, from other surfaces), then live.
    parts: list[Any] = []
    stream = c.tasks.stream(t.id)
    take(stream, int(ARGS.get("history_parts", 0)), parts)
    live = c.tasks.send_event(t.id, content={"type": "text", "text": "live"})
    take(stream, len(parts) + 3, parts)
    r["stream"] = [part(p) for p in parts]
    r["live_id"] = live.id
    by_name: list[Any] = []
    take(c.tasks.stream_by_name(f"triage{suffix}"), 3, by_name)
    r["stream_by_name"] = [p.type for p in by_name]

    r["updated"] = dump(c.tasks.update(t.id, task_metadata={"owner": "py"}))
    r["updated_by_name"] = dump(c.tasks.update_by_name(f"other{suffix}", task_metadata={"n": 1}))
    r["canceled"] = dump(c.tasks.cancel(t.id))
    r["canceled_again"] = c.tasks.cancel(t.id).status
    r["other_id"] = other.id
    for name, call in {
        "retrieve_unknown": lambda: c.tasks.retrieve("no-such-task"),
        "cancel_unknown": lambda: c.tasks.cancel("no-such-task"),
        "stream_unknown": lambda: list(c.tasks.stream("no-such-task")),
        "messages_unknown": lambda: list(c.messages_v2.list(task_id="no-such-task")),
    }.items():
        try:
            call()
            r[name] = None
        except ApiError as e:
            r[name] = {"class": type(e).__name__, "status": e.status_code, "body": e.body}
    return r


if __name__ == "__main__":
    run(main)
