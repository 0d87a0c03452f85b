"""Shared plumbing for the real-SDK scripts in test/sdk/ (driven by test/support/python-sdk.ts).

A script reads its target from the environment (SDK_BASE_URL, SDK_API_KEY: empty when auth is off,
SDK_PROJECT, SDK_ARGS: a JSON object of test-specific arguments), drives the service through the
SDK's public API only, and reports on stdout, one JSON document per line (`emit`); the last line is
the result the test gets (`run` prints what the script's main returns). SDK objects go through `dump`,
which keeps each object's class name and the Python type of each field, so the TypeScript test can
assert the SDK parsed what it requires, typed as it requires. Anything on stderr is diagnostics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import json
import os
import sys
import traceback
from typing import Any, Callable

BASE_URL: str = os.environ.get("SDK_BASE_URL", "")
API_KEY: str = os.environ.get("SDK_API_KEY", "")
PROJECT: str = os.environ.get("SDK_PROJECT", "")
ARGS: dict[str, Any] = json.loads(os.environ.get("SDK_ARGS") or "{}")


def _type_name(v: Any) -> str:
    return type(v).__name__


def dump(v: Any) -> Any:
    """A JSON value for `v`; objects become {"__class__", "__types__": {field: type}, **fields}."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, enum.Enum):
        return dump(v.value)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, dict):
        return {str(k): dump(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [dump(x) for x in v]
    fields: dict[str, Any]
    if hasattr(v, "model_dump") and hasattr(type(v), "model_fields"):  # pydantic v2
        fields = {k: getattr(v, k) for k in type(v).model_fields}
    elif dataclasses.is_dataclass(v):
        fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
    elif hasattr(v, "__dict__"):
        fields = {k: x for k, x in vars(v).items() if not k.startswith("_")}
    else:
        return repr(v)
    out: dict[str, Any] = {"__class__": type(v).__name__, "__types__": {k: _type_name(x) for k, x in fields.items()}}
    out.update({k: dump(x) for k, x in fields.items()})
    return out


def emit(v: Any) -> None:
    """Reports one line now (a test can wait for it while the script goes on)."""
    sys.stdout.write(json.dumps(dump(v)) + "\n")
    sys.stdout.flush()


def error(e: BaseException) -> dict[str, Any]:
    """What an SDK raised, for tests that expect a failure: class, message and any HTTP status."""
    status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None), "status_code", None)
    return {"error": type(e).__name__, "message": str(e)[:500], "status": status}


def run(main: Callable[[], Any]) -> None:
    """Runs main (sync or async) and emits its result; an exception exits 1 with the traceback."""
    try:
        result = main()
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        emit(result)
    except BaseException:  # noqa: BLE001 - report everything, the test decides
        traceback.print_exc()
        sys.exit(1)
