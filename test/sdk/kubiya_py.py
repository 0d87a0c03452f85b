"""Kubiya's Python clients against the service.

- The worker's control-plane client (`kubiya-control-plane-api` on PyPI,
  control_plane_api.worker.control_plane_client.ControlPlaneClient): publishes execution events
  (`publish_event`, `publish_event_async`) to POST /api/v1/executions/{id}/events with
  `Authorization: UserKey <key>`; its other calls (session, skills, environments, job records)
  belong to Kubiya's control plane and get 404 here.
- Kubiya's SDK (`kubiya-sdk` on PyPI): its clients cover Kubiya's workflow, agent, secret and
  integration APIs, none of which is this service's; what one of them gets is recorded.

ARGS: {"execution_id", "events": [[event_type, data], ...], "mode": "publish" | "out_of_scope"}.
"""

import asyncio
import logging

from harness import API_KEY, ARGS, BASE_URL, error, run

logging.disable(logging.CRITICAL)


async def publish():
    from control_plane_api.worker.control_plane_client import ControlPlaneClient

    client = ControlPlaneClient(base_url=BASE_URL, api_key=API_KEY)
    execution_id = ARGS["execution_id"]
    results = []
    for i, (event_type, data) in enumerate(ARGS["events"]):
        # Alternate the blocking and the async call: both are the worker's public API.
        if i % 2 == 0:
            ok = await asyncio.to_thread(client.publish_event, execution_id, event_type, data)
        else:
            ok = await client.publish_event_async(execution_id, event_type, data)
        results.append(ok)
    out = {"published": results, "types": [type(r).__name__ for r in results]}
    # Out of scope (Kubiya's control plane): what the worker client gets
    out["get_session"] = client.get_session(execution_id)
    out["persist_session"] = client.persist_session(execution_id, "session-1", "user-1", [{"role": "user", "content": "hi"}])
    await client.aclose()
    return out


def out_of_scope():
    from kubiya.control_plane_client import ControlPlaneClient as SdkControlPlane

    sdk = SdkControlPlane(api_key=API_KEY or "none", base_url=BASE_URL, max_retries=0)
    out = {}
    try:
        out["agents.list"] = {"returned": sdk.agents.list()}
    except Exception as e:  # noqa: BLE001
        out["agents.list"] = error(e)
    return out


run(publish if ARGS.get("mode", "publish") == "publish" else out_of_scope)
