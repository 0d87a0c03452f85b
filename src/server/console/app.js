// The console: lists a project's streams, live-tails one over the Connect protocol (server-streaming
// Subscribe with JSON messages, read with fetch), and publishes test events. No framework, no build.
const $ = (id) => document.getElementById(id);
const KINDS = { topic: "STREAM_KIND_TOPIC", execution: "STREAM_KIND_EXECUTION", task: "STREAM_KIND_TASK" };
let current = null; // { kind, key }
let subscription = null; // AbortController of the open tail
let lastSeq = 0;
let shown = 0;

for (const id of ["project", "key"]) {
  const saved = localStorage.getItem(`agent-events.${id}`);
  if (saved !== null) $(id).value = saved;
  $(id).addEventListener("change", () => localStorage.setItem(`agent-events.${id}`, $(id).value));
}

function headers(extra = {}) {
  const h = { "connect-protocol-version": "1", ...extra };
  if ($("key").value) h.authorization = `Bearer ${$("key").value}`;
  else h["x-project-id"] = $("project").value || "default";
  return h;
}

function status(text) {
  $("status").textContent = text;
}

async function unary(method, body) {
  const res = await fetch(`/events.v1.StreamService/${method}`, { method: "POST", headers: headers({ "content-type": "application/json" }), body: JSON.stringify(body) });
  const json = await res.json();
  if (!res.ok) throw new Error(`${json.code ?? res.status}: ${json.message ?? ""}`);
  return json;
}

async function refresh() {
  try {
    const { streams = [] } = await unary("ListStreams", {});
    const body = $("streams").tBodies[0];
    body.replaceChildren(
      ...streams.map((s) => {
        const tr = document.createElement("tr");
        const kind = Object.keys(KINDS).find((k) => KINDS[k] === s.stream.kind) ?? s.stream.kind;
        for (const v of [kind, s.stream.key, s.lastSequence ?? "0", s.eventCount ?? "0"]) {
          const td = document.createElement("td");
          td.textContent = v;
          tr.append(td);
        }
        tr.dataset.kind = kind;
        tr.dataset.key = s.stream.key;
        if (current && current.kind === kind && current.key === s.stream.key) tr.classList.add("open");
        tr.addEventListener("click", () => open(kind, s.stream.key, 0));
        return tr;
      }),
    );
    status(streams.length ? "" : "no streams in this project yet");
  } catch (err) {
    status(`cannot list streams: ${err.message}`);
  }
}

function envelope(json) {
  const bytes = new TextEncoder().encode(JSON.stringify(json));
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

function render(event) {
  shown++;
  const li = document.createElement("li");
  const meta = document.createElement("div");
  meta.className = "meta";
  const seq = document.createElement("span");
  seq.className = "seq";
  seq.textContent = `#${event.sequence}`;
  meta.append(seq, ` ${event.eventType || "(no type)"} · ${event.createdAt ?? ""}`);
  const pre = document.createElement("pre");
  pre.textContent = JSON.stringify(event.content ?? event.data ?? null, null, 2);
  li.append(meta, pre);
  li.dataset.sequence = event.sequence;
  $("events").append(li);
  li.scrollIntoView({ block: "nearest" });
  $("count").textContent = `${shown} shown · last #${lastSeq}`;
}

async function tail(after) {
  subscription?.abort();
  const abort = new AbortController();
  subscription = abort;
  const types = $("type-filter").value.split(",").map((t) => t.trim()).filter(Boolean);
  const request = { stream: { kind: KINDS[current.kind], key: current.key }, afterSequence: String(after), eventTypes: types };
  status("live");
  try {
    const res = await fetch("/events.v1.StreamService/Subscribe", { method: "POST", headers: headers({ "content-type": "application/connect+json" }), body: envelope(request), signal: abort.signal });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const reader = res.body.getReader();
    let buf = new Uint8Array(0);
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf);
      joined.set(value, buf.length);
      buf = joined;
      while (buf.length >= 5) {
        const flags = buf[0];
        const len = new DataView(buf.buffer, buf.byteOffset).getUint32(1);
        if (buf.length < 5 + len) break;
        const msg = JSON.parse(new TextDecoder().decode(buf.subarray(5, 5 + len)));
        buf = buf.slice(5 + len);
        if (flags & 2) {
          if (msg.error) throw new Error(`${msg.error.code}: ${msg.error.message ?? ""}`);
          continue;
        }
        for (const e of msg.events ?? []) {
          lastSeq = Number(e.sequence);
          render(e);
        }
      }
    }
    if (subscription === abort) status("stream ended");
  } catch (err) {
    if (!abort.signal.aborted) status(`stream failed: ${err.message}`);
  }
}

function open(kind, key, from) {
  current = { kind, key };
  lastSeq = from;
  shown = 0;
  $("events").replaceChildren();
  $("tail-title").textContent = `${kind} / ${key}`;
  $("from").value = String(from);
  $("pause").disabled = false;
  $("pause").textContent = "Pause";
  $("publish").querySelector("button").disabled = false;
  for (const tr of $("streams").tBodies[0].rows) tr.classList.toggle("open", tr.dataset.kind === kind && tr.dataset.key === key);
  void tail(from);
}

$("refresh").addEventListener("click", refresh);
$("tail-controls").addEventListener("submit", (e) => {
  e.preventDefault();
  if (current) open(current.kind, current.key, Number($("from").value) || 0);
});
$("pause").addEventListener("click", () => {
  if (!current) return;
  if (subscription && !subscription.signal.aborted) {
    subscription.abort();
    status(`paused at #${lastSeq}`);
    $("pause").textContent = "Resume";
  } else {
    $("pause").textContent = "Pause";
    void tail(lastSeq); // resume where it stopped: nothing is missed, nothing repeated
  }
});
$("publish").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!current) return;
  try {
    const data = JSON.parse($("pub-data").value);
    const res = await unary("Publish", { stream: { kind: KINDS[current.kind], key: current.key }, events: [{ eventType: $("pub-type").value, data }] });
    $("pub-result").textContent = `stored as #${res.sequences[0]}`;
    void refresh();
  } catch (err) {
    $("pub-result").textContent = `failed: ${err.message}`;
  }
});

const params = new URLSearchParams(location.search);
if (params.get("project")) $("project").value = params.get("project");
await refresh();
if (params.get("kind") && params.get("key")) open(params.get("kind"), params.get("key"), Number(params.get("from") ?? 0));
