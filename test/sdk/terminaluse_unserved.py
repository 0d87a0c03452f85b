"""Every call of TerminalUse's Python client that this service does not serve (out of its scope:
agents, filesystems, deployments, ...): what the SDK gets for each. Calls each public method of each
resource client once, with placeholder values for its required parameters, and reports the HTTP
status of the ApiError the SDK raises (or the error class when the SDK fails before sending).

SDK_ARGS: {"served": ["tasks.create", ...]} — the calls the test covers elsewhere, skipped here.
"""

from __future__ import annotations

import inspect
from typing import Any

from harness import API_KEY, ARGS, BASE_URL, run
from terminaluse import TerminalUse
from terminaluse.core.api_error import ApiError


def placeholder(p: inspect.Parameter) -> Any:
    ann = str(p.annotation)
    if "Sequence" in ann or "List" in ann:
        return []
    if "Dict" in ann or "Mapping" in ann:
        return {}
    if "int" in ann and "str" not in ann:
        return 1
    if "bool" in ann and "str" not in ann:
        return True
    return "x"


def main() -> dict[str, Any]:
    c = TerminalUse(base_url=BASE_URL, token=API_KEY or None)
    served = set(ARGS.get("served", []))
    out: dict[str, Any] = {}
    calls: list[tuple[str, Any]] = [("search", c.search)]
    for res in sorted(n for n in dir(c) if not n.startswith("_") and n not in ("with_raw_response", "search")):
        obj = getattr(c, res)
        for m in sorted(n for n in dir(obj) if not n.startswith("_") and n != "with_raw_response"):
            calls.append((f"{res}.{m}", getattr(obj, m)))
    for name, fn in calls:
        if name in served or not callable(fn):
            continue
        sig = inspect.signature(fn)
        args = {n: placeholder(p) for n, p in sig.parameters.items() if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        try:
            result = fn(**args)
            if inspect.isgenerator(result) or hasattr(result, "__next__"):
                next(iter(result))
            out[name] = {"status": "ok"}
        except ApiError as e:
            out[name] = {"status": e.status_code}
        except Exception as e:  # noqa: BLE001 - the SDK failed before or after the request
            out[name] = {"error": type(e).__name__, "message": str(e)[:200]}
    return out


if __name__ == "__main__":
    run(main)
