#!/usr/bin/env bash
# Smoke run on another Node release line (CI: the maintenance LTS, 24): start the built server,
# publish, and read the event back live over SSE. Usage: bash .ci/smoke.sh <node-version>
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(bash .ci/node.sh "$1")"
port="$("$bin/node" -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
log="$(mktemp)"
PORT="$port" "$bin/node" dist/src/main.js >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
sse="$(mktemp)"
curl -sN --max-time 10 -H 'X-Project-ID: smoke' \
  "http://127.0.0.1:$port/api/v1/events/stream?topic=smoke&last_sequence_id=0" >"$sse" &
reader=$!
sleep 0.5
pub="$(curl -fs -X POST "http://127.0.0.1:$port/api/v1/events/publish" -H 'Content-Type: application/json' \
  -H 'X-Project-ID: smoke' -d '{"topic":"smoke","events":[{"event_type":"hello","data":{"n":1}}]}')"
for _ in $(seq 1 50); do grep -q '"event_type":"hello"' "$sse" && break; sleep 0.1; done
kill "$reader" 2>/dev/null || true
echo "node $("$bin/node" --version): publish -> $pub"
grep -q '"sequence_ids":\[1\]' <<<"$pub" || { cat "$log" >&2; echo "smoke: publish failed" >&2; exit 1; }
grep -q '"event_type":"hello"' "$sse" || { cat "$log" "$sse" >&2; echo "smoke: the subscriber got nothing" >&2; exit 1; }
kill -TERM $pid; wait $pid || true
echo "smoke on node $1: start, publish, subscribe ok"
