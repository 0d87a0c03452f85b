// The operators' console: the project's streams (every kind) with publish rate, live readers and
// last activity, refreshed every 2 s while the tab is visible; Sailhouse subscriptions with their
// backlog; one stream tailed live in compact rows (virtualised, expand, copy, type search, jump to
// a time); a test publish. No framework, no build step: the files are served as they are.
import { credentials, durableAppend, durableHead, durableSse, serverStream, unary, Unauthenticated } from "./api.js";
import { age, clock, eventView, hexdump, KINDS, kindOf, oneLine, parseInstant, previewOf, rate, utf8 } from "./format.js";
import { RowList } from "./rows.js";

const $ = (id) => document.getElementById(id);
const STREAMS = "events.v1.StreamService";
const SAILHOUSE = "sailhouse.v1.SailhouseService";
const REFRESH_MS = 2000;
/** Rows kept per open stream; older ones are dropped (open from a later sequence or jump to see them). */
const MAX_ROWS = 20000;
/** Opening a stream by clicking it reads at most this many of its latest events first. */
const RECENT = 5000;

let current = null; // { kind, key, durable?: { contentType, json } }
let tailAbort = null;
let position = { seq: 0, offset: "-1" }; // where the tail is: resume from here
let listed = new Map(); // "kind/key" -> StreamInfo of the last refresh
let lastReading = new Map(); // "kind/key" -> { seq, at } for rates
let rates = new Map();
let wantedStreams = 200;
let subscriptionsOk = true;

const rows = new RowList($("events"), {
  rowHeight: 22,
  max: MAX_ROWS,
  row: (it) => [it.seq, it.type, it.time, it.preview],
  detail: (it, el) => {
    const bar = document.createElement("div");
    bar.className = "detail-bar";
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.title = "Copy this event to the clipboard";
    copy.addEventListener("click", async (e) => {
      e.stopPropagation();
      copy.textContent = (await copyText(it.copy)) ? "Copied" : "Copy failed";
    });
    bar.append(copy, ...(it.note ? [Object.assign(document.createElement("span"), { textContent: it.note })] : []));
    const pre = document.createElement("pre");
    pre.textContent = it.detail;
    el.append(bar, pre);
  },
  rendered: () => showCount(),
});

// ------------------------------------------------------------------ status, credentials

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function failed(what, err) {
  if (err instanceof Unauthenticated) return askForKey(err.message);
  status(`${what}: ${err.message}`, true);
}

function askForKey(reason) {
  const d = $("auth");
  if (d.open) return;
  $("auth-reason").textContent = reason ? `The service answered 401: ${reason}` : "Set the API key this console sends (Authorization: Bearer).";
  $("auth-key").value = credentials.key;
  d.showModal();
}

$("auth").addEventListener("close", () => {
  if ($("auth").returnValue !== "save") return;
  credentials.key = $("auth-key").value.trim();
  showKey();
  status("");
  void refresh();
  if (current) open(current.kind, current.key, current.durable ? position.offset : String(position.seq));
});
$("key-button").addEventListener("click", () => askForKey(""));

function showKey() {
  $("key-button").textContent = credentials.key ? "API key ✓" : "API key…";
  $("project").disabled = Boolean(credentials.key);
}

$("project").value = credentials.project;
$("project").addEventListener("change", () => {
  credentials.project = $("project").value.trim();
  listed = new Map();
  lastReading = new Map();
  void refresh();
});

/** Clipboard API where the page is a secure context (https, localhost); a hidden textarea otherwise. */
async function copyText(text) {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  const ta = Object.assign(document.createElement("textarea"), { value: text });
  ta.style.position = "fixed";
  ta.style.opacity = "0";
  document.body.append(ta);
  ta.select();
  const ok = document.execCommand("copy");
  ta.remove();
  return ok;
}

// ------------------------------------------------------------------ stream list and subscriptions

const keyOf = (kind, key) => `${kind}/${key}`;

function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  if (title) td.title = title;
  tr.append(td);
}

async function refreshStreams() {
  const kind = $("kind-filter").value;
  const res = await unary(STREAMS, "ListStreams", { ...(kind ? { kind: KINDS[kind] } : {}), limit: Math.min(wantedStreams, 1000) });
  const now = Date.now();
  const streams = res.streams ?? [];
  listed = new Map();
  for (const s of streams) {
    const k = keyOf(kindOf(s.stream.kind), s.stream.key);
    const seq = Number(s.lastSequence ?? 0);
    listed.set(k, s);
    // Publish rate: sequences taken since the previous refresh, per second.
    const prev = lastReading.get(k);
    if (prev && now > prev.at) rates.set(k, (seq - prev.seq) / ((now - prev.at) / 1000));
    lastReading.set(k, { seq, at: now });
  }
  $("more-streams").hidden = !res.nextPageToken || wantedStreams >= 1000;
  renderStreams(now);
}

function renderStreams(now = Date.now()) {
  const filter = $("key-filter").value.trim().toLowerCase();
  const body = $("streams").tBodies[0];
  const trs = [];
  for (const [k, s] of listed) {
    if (filter && !s.stream.key.toLowerCase().includes(filter)) continue;
    const kind = kindOf(s.stream.kind);
    const tr = document.createElement("tr");
    const last = s.lastEventAt ? Date.parse(s.lastEventAt) : undefined;
    cell(tr, kind, `kind k-${kind}`);
    cell(tr, s.stream.key, "key", s.stream.key);
    cell(tr, s.lastSequence ?? "0", "num");
    cell(tr, s.eventCount ?? "0", "num");
    cell(tr, rate(rates.get(k)), "num rate");
    cell(tr, String(s.subscribers ?? 0), "num subs");
    cell(tr, last === undefined ? "–" : age(now - last), "num active", s.lastEventAt ?? "never published");
    tr.dataset.kind = kind;
    tr.dataset.key = s.stream.key;
    if (current && current.kind === kind && current.key === s.stream.key) tr.classList.add("open");
    tr.addEventListener("click", () => open(kind, s.stream.key));
    trs.push(tr);
  }
  body.replaceChildren(...trs);
  if (trs.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 7;
    td.className = "empty";
    td.textContent = listed.size ? "no stream matches" : "no streams in this project yet";
    tr.append(td);
    body.append(tr);
  }
}

async function refreshSubscriptions() {
  let res;
  try {
    res = await unary(SAILHOUSE, "ListSubscriptionBacklogs", { limit: 200 });
    subscriptionsOk = true;
  } catch (err) {
    // A 401 is handled with the stream list; other failures show in the pane.
    if (err instanceof Unauthenticated) throw err;
    subscriptionsOk = false;
    $("subs-empty").hidden = false;
    $("subs-empty").textContent = `cannot list subscriptions: ${err.message}`;
    return;
  }
  const now = Date.now();
  const subs = res.subscriptions ?? [];
  $("subs-empty").hidden = subs.length > 0;
  $("subs-empty").textContent = "no subscriptions in this project";
  $("subs").tBodies[0].replaceChildren(
    ...subs.map((s) => {
      const tr = document.createElement("tr");
      const lagMs = s.oldestPendingAt ? now - Date.parse(s.oldestPendingAt) : undefined;
      const push = s.pushStatus;
      cell(tr, `${s.topicSlug} / ${s.subscriptionSlug}`, "key", `${s.topicSlug} / ${s.subscriptionSlug}`);
      cell(tr, s.type);
      cell(tr, s.pending ?? "0", "num pending");
      cell(tr, lagMs === undefined ? "–" : age(lagMs), "num lag", s.oldestPendingAt ? `oldest pending event appended ${s.oldestPendingAt}` : "nothing pending");
      cell(tr, push ? (push.status === "failing" ? `failing ×${push.consecutiveFailures ?? 0}` : push.status) : "–", push?.status === "failing" ? "failing" : "", push?.lastError ?? "");
      // Behind by a minute or more: worth a look.
      if (lagMs !== undefined && lagMs >= 60_000) tr.classList.add("lagging");
      tr.addEventListener("click", () => open("topic", s.topicSlug));
      return tr;
    }),
  );
}

async function refresh() {
  try {
    await Promise.all([refreshStreams(), refreshSubscriptions()]);
    $("updated").textContent = `updated ${clock(new Date().toISOString()).slice(0, 8)}`;
    if ($("status").classList.contains("error")) status("");
  } catch (err) {
    failed("cannot list streams", err);
  }
}

let timer;
function schedule() {
  clearInterval(timer);
  // Paused while the tab is hidden: no calls nobody looks at.
  if (document.hidden) {
    $("updated").textContent = "refresh paused (tab hidden)";
    return;
  }
  timer = setInterval(refresh, REFRESH_MS);
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void refresh();
  schedule();
});
$("kind-filter").addEventListener("change", () => void refresh());
$("key-filter").addEventListener("input", () => renderStreams());
$("more-streams").addEventListener("click", () => {
  wantedStreams += 200;
  void refresh();
});

// ------------------------------------------------------------------ the open stream

function showCount() {
  const { shown, total } = rows.counts();
  const where = current?.durable ? `next offset ${position.offset}` : `last #${position.seq}`;
  const dropped = rows.dropped ? ` · ${rows.dropped} older dropped` : "";
  const events = `${total} event${total === 1 ? "" : "s"}`;
  $("count").textContent = current ? `${shown === total ? events : `${shown} of ${events}`} · ${where}${dropped}` : "";
}

/** A log event as a row: one line, and its API form to expand and copy. */
function eventRow(e) {
  const view = eventView(e);
  const json = JSON.stringify(view, null, 2);
  return { key: `s${view.sequence}`, seq: `#${view.sequence}`, type: view.event_type || "(no type)", time: clock(view.created_at), preview: previewOf(view), detail: json, copy: json, note: view.created_at };
}

let durableCount = 0;
/** The messages of one Durable Streams data event as rows (JSON: one per message; bytes: one per event). */
function durableRows(ev, from) {
  const note = `from offset ${from}`;
  if (current.durable.json) {
    const messages = JSON.parse(ev.data);
    return messages.map((m) => {
      const text = JSON.stringify(m, null, 2);
      const n = ++durableCount;
      return { key: `d${n}`, seq: `#${n}`, type: "json", time: "", preview: oneLine(JSON.stringify(m)), detail: text, copy: text, note };
    });
  }
  const bytes = ev.base64 ? Uint8Array.from(atob(ev.data), (c) => c.charCodeAt(0)) : new TextEncoder().encode(ev.data);
  const text = utf8(bytes);
  // Text worth showing: valid UTF-8 without control characters (tabs and line ends aside).
  const printable = text !== undefined && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/.test(text);
  const n = ++durableCount;
  const preview = ev.base64 ? `${bytes.length} bytes: ${hexdump(bytes.subarray(0, 16)).slice(10, 57).trim()}${bytes.length > 16 ? " …" : ""}` : oneLine(text ?? "");
  const detail = ev.base64 ? `${bytes.length} bytes\n\n${hexdump(bytes)}${printable ? `\n\nas UTF-8:\n${text}` : ""}` : (text ?? "");
  return [{ key: `d${n}`, seq: `#${n}`, type: ev.base64 ? "bytes" : "text", time: "", preview, detail, copy: ev.base64 ? ev.data : (text ?? ""), note }];
}

async function tailLog(after, abort) {
  const stream = { kind: KINDS[current.kind], key: current.key };
  for await (const msg of serverStream(STREAMS, "Subscribe", { stream, afterSequence: String(after) }, abort.signal)) {
    const events = msg.events ?? [];
    if (events.length === 0) continue;
    position.seq = Number(events[events.length - 1].sequence);
    rows.push(events.map(eventRow));
  }
}

async function tailDurable(offset, abort) {
  let from = offset;
  for await (const ev of durableSse(current.key, offset, abort.signal)) {
    if (ev.control) {
      from = ev.control.streamNextOffset ?? from;
      position.offset = from;
      if (ev.control.streamClosed) $("tail-info").textContent = `${current.durable.contentType} · closed`;
      showCount();
    } else rows.push(durableRows(ev, from));
  }
}

async function tail(start) {
  tailAbort?.abort();
  const abort = new AbortController();
  tailAbort = abort;
  status("");
  $("pause").textContent = "Pause";
  try {
    if (current.durable) await tailDurable(start, abort);
    else await tailLog(Number(start) || 0, abort);
    if (tailAbort === abort) $("tail-info").textContent += " · ended";
  } catch (err) {
    if (!abort.signal.aborted) failed("stream failed", err);
  }
}

async function open(kind, key, from) {
  tailAbort?.abort();
  tailAbort = null;
  if (!current || current.kind !== kind || current.key !== key) {
    // Another stream: the type search starts over.
    $("type-search").value = "";
    rows.setFilter(undefined);
  }
  current = { kind, key };
  durableCount = 0;
  rows.clear();
  // Nothing of the previous stream stays on screen: its publish result or error included.
  $("pub-result").textContent = "";
  $("pub-result").classList.remove("error");
  $("tail-title").textContent = `${kind} / ${key}`;
  $("tail-info").textContent = "";
  for (const tr of $("streams").tBodies[0].rows) tr.classList.toggle("open", tr.dataset.kind === kind && tr.dataset.key === key);
  $("pause").disabled = false;
  $("publish").querySelector("button").disabled = false;
  $("pub-type-label").hidden = kind === "durable";
  $("jump").disabled = kind === "durable";
  $("jump-time").disabled = kind === "durable";
  $("jump").title = kind === "durable" ? "Durable Streams carry no times: open from an offset" : "";
  const here = current;
  if (kind === "durable") {
    try {
      const head = await durableHead(key);
      if (current !== here) return;
      current.durable = { contentType: head.contentType, json: head.contentType.split(";")[0].trim().toLowerCase() === "application/json" };
      $("tail-info").textContent = head.contentType + (head.closed ? " · closed" : "");
    } catch (err) {
      return failed(`cannot open ${key}`, err);
    }
    position = { seq: 0, offset: from ?? "-1" };
  } else {
    const head = Number(listed.get(keyOf(kind, key))?.lastSequence ?? 0);
    position = { seq: from !== undefined ? Number(from) || 0 : Math.max(0, head - RECENT), offset: "-1" };
    $("tail-info").textContent = position.seq > 0 ? `from #${position.seq + 1}` : "";
  }
  $("from").value = current.durable ? position.offset : String(position.seq);
  showCount();
  void tail(current.durable ? position.offset : position.seq);
}

$("tail-controls").addEventListener("submit", (e) => {
  e.preventDefault();
  if (current) void open(current.kind, current.key, $("from").value.trim() || undefined);
});

$("pause").addEventListener("click", () => {
  if (!current) return;
  if (tailAbort && !tailAbort.signal.aborted) {
    tailAbort.abort();
    $("pause").textContent = "Resume";
    status(current.durable ? `paused at offset ${position.offset}` : `paused at #${position.seq}`);
  } else {
    // Resume where it stopped: nothing missed, nothing repeated.
    void tail(current.durable ? position.offset : position.seq);
  }
});

$("type-search").addEventListener("input", () => {
  const q = $("type-search").value.trim().toLowerCase();
  rows.setFilter(q ? (it) => it.type.toLowerCase().includes(q) : undefined);
});

/**
 * The last sequence of an event created before `at`, by bisection over ListEvents (one event per
 * call, about log2(last sequence) calls): sequences are taken in time order.
 */
async function sequenceBefore(stream, at) {
  let lo = 0;
  let hi = Number(listed.get(keyOf(current.kind, current.key))?.lastSequence ?? position.seq);
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const page = await unary(STREAMS, "ListEvents", { stream, afterSequence: String(mid - 1), limit: 1 });
    const e = page.events?.[0];
    if (e && Date.parse(e.createdAt) < at.getTime()) lo = Number(e.sequence);
    else hi = mid - 1;
  }
  return lo;
}

async function jump() {
  if (!current || current.durable) return;
  const at = parseInstant($("jump-time").value);
  if (!at) return status("time: write 14:03, 14:03:07 or an ISO 8601 instant", true);
  try {
    const here = current;
    const seq = await sequenceBefore({ kind: KINDS[current.kind], key: current.key }, at);
    if (current !== here) return;
    await open(current.kind, current.key, String(seq));
    $("tail-info").textContent = `from ${at.toISOString()} (after #${seq})`;
  } catch (err) {
    failed("jump", err);
  }
}
$("jump").addEventListener("click", () => void jump());
$("jump-time").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    e.preventDefault();
    void jump();
  }
});

$("publish").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!current) return;
  const result = $("pub-result");
  const here = current;
  try {
    let msg;
    if (current.durable) {
      const body = $("pub-data").value;
      if (current.durable.json) JSON.parse(body);
      msg = `appended; next offset ${await durableAppend(current.key, current.durable.contentType, body)}`;
    } else {
      const data = JSON.parse($("pub-data").value);
      const res = await unary(STREAMS, "Publish", { stream: { kind: KINDS[current.kind], key: current.key }, events: [{ eventType: $("pub-type").value, data }] });
      msg = `stored as #${res.sequences[0]}`;
    }
    if (current !== here) return;
    result.textContent = msg;
    result.classList.remove("error");
    void refresh();
  } catch (err) {
    if (current !== here) return;
    if (err instanceof Unauthenticated) return askForKey(err.message);
    result.textContent = `failed: ${err.message}`;
    result.classList.add("error");
  }
});

// ------------------------------------------------------------------ start

const params = new URLSearchParams(location.search);
if (params.get("project")) {
  credentials.project = params.get("project");
  $("project").value = credentials.project;
}
showKey();
await refresh();
schedule();
if (params.get("kind") && params.get("key")) void open(params.get("kind"), params.get("key"), params.get("from") ?? undefined);
