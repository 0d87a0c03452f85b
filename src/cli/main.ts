#!/usr/bin/env node
/**
 * agent-events: publish, read, tail and list the streams of a running service (the generated
 * Connect client; Durable Streams appends over their HTTP protocol). Conventions of nats, redis-cli
 * and kcat: data on stdout only, one line per event; errors one line on stderr with an exit code
 * per cause (src/cli/exit.ts); quiet when the pipe closes. Reference: docs/cli.md.
 *   agent-events --project demo publish polos orders '{"id": 1}' --type created
 *   agent-events --project demo tail topic/orders --from 0 --count 10 --raw
 *   printf '%s\n' '{"n":1}' '{"n":2}' | agent-events --project demo publish polos orders
 *   agent-events --project demo streams
 */
import { createInterface } from "node:readline";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { EventSchema, StreamKind, StreamService, type Event } from "../../gen/events/v1/events_pb.js";
import { EventsService } from "../../gen/polos/v1/polos_pb.js";
import { ExecutionEventsService } from "../../gen/kubiya/v1/kubiya_pb.js";
import { SailhouseService } from "../../gen/sailhouse/v1/sailhouse_pb.js";
import { TaskEventsService } from "../../gen/terminaluse/v1/terminaluse_pb.js";
import { CreateApiKeyRequestSchema, ListApiKeysRequestSchema, RevokeApiKeyRequestSchema } from "../../gen/admin/v1/admin_pb.js";
import { VERSION } from "../version.js";
import { openKeyAdmin, type KeyAdmin } from "./admin.js";
import { CliError, describeFailure, EXIT, usage } from "./exit.js";
import { emit, guardStdout, onStdoutClosed, table } from "./output.js";
import { durableAppend, durableCreate, durableInfo, type DurableInfo, type HttpTarget } from "./durable.js";

interface Globals {
  url: string;
  project?: string;
  key?: string;
  protocol: "grpc" | "connect";
}

const KINDS: Record<string, StreamKind> = { topic: StreamKind.TOPIC, execution: StreamKind.EXECUTION, task: StreamKind.TASK, durable: StreamKind.DURABLE };
const DIALECTS = ["polos", "kubiya", "sailhouse", "terminaluse", "durable"] as const;
type Dialect = (typeof DIALECTS)[number];
type Stream = { kind: StreamKind; key: string };

function transport(g: Globals): Transport {
  return g.protocol === "grpc" ? createGrpcTransport({ baseUrl: g.url }) : createConnectTransport({ baseUrl: g.url, httpVersion: "1.1", useBinaryFormat: true });
}

function headers(g: Globals): Record<string, string> {
  const h: Record<string, string> = {};
  if (g.key) h["authorization"] = `Bearer ${g.key}`;
  if (g.project) h["x-project-id"] = g.project;
  return h;
}

const http = (g: Globals): HttpTarget => ({ url: g.url, headers: headers(g) });

/** "topic/orders" → {kind, key}; a bare name is a topic. */
function parseStream(spec: string): Stream {
  const i = spec.indexOf("/");
  const kind = i > 0 ? KINDS[spec.slice(0, i)] : undefined;
  if (i > 0 && kind === undefined && /^[a-z]+$/.test(spec.slice(0, i))) throw usage(`unknown stream kind in ${JSON.stringify(spec)}: use topic/…, execution/…, task/… or durable/…`);
  const key = kind === undefined ? spec : spec.slice(i + 1);
  if (!key) throw usage(`no stream name in ${JSON.stringify(spec)}`);
  return { kind: kind ?? StreamKind.TOPIC, key };
}

const kindName = (k: StreamKind): string => StreamKind[k].toLowerCase();

function parseJson(text: string, where = ""): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw usage(`${where}not valid JSON: ${(err as Error).message}`);
  }
}

function asObject(v: JsonValue, what: string): { [k: string]: JsonValue } {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw usage(`${what} must be a JSON object`);
  return v;
}

function count(value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new InvalidArgumentError("a positive integer");
  return Number(value);
}

function sequence(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError("a sequence number (0 = from the beginning)");
  return BigInt(value);
}

const program = new Command()
  .name("agent-events")
  .description("Publish to, read, tail and list the streams of an agent-events service.")
  .addHelpText("after", "\nExit codes: 0 ok, 1 refused/other, 2 usage, 3 not found,\n            4 unauthenticated, 5 unavailable (docs/cli.md)")
  .version(VERSION, "-V, --version")
  .addOption(new Option("--url <url>", "service URL").env("EVENTS_URL").default("http://127.0.0.1:8080"))
  .addOption(new Option("--project <project>", "project (X-Project-ID) when the service runs without keys").env("EVENTS_PROJECT"))
  .addOption(new Option("--key <key>", "API key").env("EVENTS_API_KEY"))
  .addOption(new Option("--protocol <protocol>", "RPC protocol").choices(["grpc", "connect"]).default("grpc"))
  .exitOverride()
  // Commander's usage errors, like every other failure: one line on stderr.
  .configureOutput({ outputError: (text, write) => write(`${text.trimEnd()} (agent-events --help for usage)\n`) });

const globals = (): Globals => {
  const g = program.opts<Globals>();
  if (!URL.canParse(g.url) || !/^https?:$/.test(new URL(g.url).protocol)) throw usage(`--url must be an http:// or https:// URL, got ${JSON.stringify(g.url)}`);
  return g;
};

/** Publishes one event (its data as given on the command line or stdin); returns the answer to print. */
type Publisher = (data: string) => Promise<unknown>;

function publisher(dialect: Dialect, stream: string, g: Globals, opts: { type: string; create?: boolean; contentType: string }): Publisher {
  const t = transport(g);
  const h = { headers: headers(g) };
  switch (dialect) {
    case "polos": {
      const c = createClient(EventsService, t);
      return async (text) => {
        const r = await c.publishEvents({ topic: stream, events: [{ eventType: opts.type, data: fromJson(ValueSchema, parseJson(text)) }] }, h);
        return { sequence_ids: r.sequenceIds.map(Number), created_at: r.createdAt };
      };
    }
    case "kubiya": {
      const c = createClient(ExecutionEventsService, t);
      return async (text) => {
        const r = await c.publishExecutionEvent({ executionId: stream, eventType: opts.type, data: asObject(parseJson(text), "kubiya data") }, h);
        return { success: r.success, execution_id: r.executionId, event_type: r.eventType };
      };
    }
    case "sailhouse": {
      const c = createClient(SailhouseService, t);
      return async (text) => ({ id: (await c.sendEvent({ topicSlug: stream, data: asObject(parseJson(text), "sailhouse data") }, h)).id });
    }
    case "terminaluse": {
      const c = createClient(TaskEventsService, t);
      return async (text) => {
        const data = parseJson(text);
        const content = typeof data === "string" ? { part: { case: "text" as const, value: { text: data } } } : { part: { case: "data" as const, value: { data: asObject(data, "terminaluse data") } } };
        const r = await c.sendTaskEvent({ taskId: stream, content }, h);
        return { id: r.id, sequence_id: Number(r.sequenceId), task_id: r.taskId };
      };
    }
    case "durable": {
      // The stream's content type decides the body: JSON streams take JSON, others the line's bytes.
      let info: Promise<DurableInfo> | undefined;
      const target = http(g);
      const open = async (): Promise<DurableInfo> => {
        if (opts.create) await durableCreate(target, stream, opts.contentType);
        return durableInfo(target, stream);
      };
      return async (text) => ({ next_offset: await durableAppend(target, stream, await (info ??= open()), text) });
    }
  }
}

program
  .command("publish")
  .description("publish events through a platform's API, or append to a durable stream; without <data> (or with -), one event per line of stdin")
  .argument("<dialect>", DIALECTS.join(" | "))
  .argument("<stream>", "topic (polos, sailhouse), execution id (kubiya), task id (terminaluse) or durable stream name")
  .argument("[data]", "the event's data as JSON (terminaluse: an object is a data part, a string a text part; durable: the message, JSON or text by the stream's type)")
  .option("--type <event_type>", "event type (polos, kubiya)", "cli")
  .option("--create", "durable: create the stream first if it does not exist")
  .option("--content-type <type>", "durable, with --create: the stream's content type", "application/json")
  .action(async (dialect: string, stream: string, data: string | undefined, opts: { type: string; create?: boolean; contentType: string }) => {
    if (!(DIALECTS as readonly string[]).includes(dialect)) throw usage(`unknown dialect ${JSON.stringify(dialect)}: ${DIALECTS.join(", ")}`);
    const publish = publisher(dialect as Dialect, stream, globals(), opts);
    const print = async (r: unknown) => emit(JSON.stringify(r) + "\n");
    if (data !== undefined && data !== "-") return print(await publish(data));
    // One event per line, in order, each acked before the next is sent; a bad line stops here.
    let n = 0;
    for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
      n++;
      if (!line.trim()) continue;
      try {
        await print(await publish(line));
      } catch (err) {
        if (err instanceof CliError) throw new CliError(`stdin line ${n}: ${err.message}`, err.exitCode);
        throw err;
      }
    }
  });

interface ReadOptions {
  from?: bigint;
  type?: string[];
  count?: number;
  raw?: boolean;
  follow: boolean;
}

/** One event as printed: the whole event as a JSON line, or with --raw its data only (bytes as they are). */
function formatEvent(e: Event, raw: boolean | undefined): string | Uint8Array {
  if (!raw) return JSON.stringify(toJson(EventSchema, e, { useProtoFieldName: true })) + "\n";
  if (e.payload !== undefined) return Buffer.concat([e.payload, Buffer.from("\n")]);
  if (e.data) return JSON.stringify(toJson(ValueSchema, e.data)) + "\n";
  // TerminalUse content in its own JSON shape: {"type": "text", "text": …} or {"type": "data", "data": {…}}.
  if (e.content?.part.case === "text") return JSON.stringify({ type: "text", text: e.content.part.value.text }) + "\n";
  if (e.content?.part.case === "data") return JSON.stringify({ type: "data", data: e.content.part.value.data ?? {} }) + "\n";
  return "null\n";
}

type StreamClient = Client<typeof StreamService>;

/** The stream's last sequence, or undefined when the project has no such stream. */
async function headOf(client: StreamClient, stream: Stream, g: Globals): Promise<bigint | undefined> {
  for (let pageToken = "", first = true; first || pageToken; first = false) {
    const r = await client.listStreams({ kind: stream.kind, limit: 1000, pageToken }, { headers: headers(g) });
    const found = r.streams.find((s) => s.stream?.key === stream.key);
    if (found) return found.lastSequence;
    pageToken = r.nextPageToken;
  }
  return undefined;
}

const notFound = (spec: string) => new CliError(`stream ${spec} not found`, EXIT.notFound);

async function readStream(spec: string, opts: ReadOptions): Promise<void> {
  const g = globals();
  const client = createClient(StreamService, transport(g));
  const stream = parseStream(spec);
  const name = `${kindName(stream.kind)}/${stream.key}`;
  // Durable streams exist only once created; other streams appear with their first event, so
  // following one that has none yet is fine, reading it is "not found".
  if (stream.kind === StreamKind.DURABLE) await durableInfo(http(g), stream.key);
  const head = await headOf(client, stream, g);
  if (head === undefined && !opts.follow && stream.kind !== StreamKind.DURABLE) throw notFound(name);
  const types = opts.type ?? [];
  let left = opts.count ?? Infinity;
  // Following starts at the head (only new events); reading to the end starts at the beginning.
  let after = opts.from ?? (opts.follow ? (head ?? 0n) : 0n);
  const wanted = (e: Event) => types.length === 0 || types.includes(e.eventType);

  if (!opts.follow) {
    const end = head ?? 0n;
    while (left > 0 && after < end) {
      const page = await client.listEvents({ stream, afterSequence: after, limit: 1000 }, { headers: headers(g) });
      for (const e of page.events) {
        if (e.sequence > end || left <= 0) break;
        if (!wanted(e)) continue;
        left--;
        await emit(formatEvent(e, opts.raw));
      }
      if (!page.hasMore || page.nextAfterSequence <= after) break;
      after = page.nextAfterSequence;
    }
    return;
  }

  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  process.once("SIGTERM", () => abort.abort());
  onStdoutClosed(() => abort.abort());
  // A live count/rate line on stderr, only when both ends are a terminal (never in a pipe).
  const tty = process.stdout.isTTY && process.stderr.isTTY;
  let seen = 0;
  let last = after;
  const started = Date.now();
  const ticker = tty ? setInterval(() => process.stderr.write(`\r\x1b[2K${seen} events · ${(seen / Math.max(1, (Date.now() - started) / 1000)).toFixed(1)}/s`), 500) : undefined;
  try {
    for await (const res of client.subscribe({ stream, afterSequence: after, eventTypes: types }, { signal: abort.signal, headers: headers(g) })) {
      for (const e of res.events) {
        seen++;
        last = e.sequence;
        if (tty) process.stderr.write("\r\x1b[2K");
        await emit(formatEvent(e, opts.raw));
        if (--left <= 0) {
          abort.abort();
          return;
        }
      }
    }
    // The service ended the subscription (it is shutting down): say so, so a script can resume.
    if (!abort.signal.aborted) throw new CliError(`the service ended the subscription after sequence ${last}; resume with --from ${last}`, EXIT.unavailable);
  } catch (err) {
    if (!(err instanceof ConnectError && err.code === Code.Canceled) && !abort.signal.aborted) throw err;
  } finally {
    if (ticker) {
      clearInterval(ticker);
      process.stderr.write(`\r\x1b[2K${seen} events\n`);
    }
  }
}

const readOptions = (cmd: Command, fromHelp: string) =>
  cmd
    .argument("<stream>", "kind/key: topic/orders, execution/ex-1, task/<id>, durable/<name> (a bare name is a topic)")
    .option("--from <seq>", fromHelp, sequence)
    .option("--type <event_type...>", "only these event types")
    .option("-n, --count <n>", "stop after n events", count)
    .option("--raw", "the events' data only (JSON, or a durable stream's bytes), one per line");

readOptions(program.command("tail").description("follow a stream: one JSON line per event until Ctrl-C (or --count)"), "start after this sequence (0 = from the beginning; default: only new events)")
  .option("--no-follow", "read from the beginning (or --from) to the stream's end, then exit: same as read")
  .action((spec: string, opts: ReadOptions) => readStream(spec, opts));

readOptions(program.command("read").description("print a stream's events up to its current end, then exit (tail --no-follow)"), "start after this sequence (default: from the beginning)").action((spec: string, opts: Omit<ReadOptions, "follow">) =>
  readStream(spec, { ...opts, follow: false }),
);

program
  .command("streams")
  .description("list the project's streams with their last sequence and event count")
  .addOption(new Option("--kind <kind>").choices(Object.keys(KINDS)))
  .option("--json", "JSON lines instead of a table")
  .action(async (opts: { kind?: string; json?: boolean }) => {
    const g = globals();
    const kind = opts.kind === undefined ? StreamKind.UNSPECIFIED : KINDS[opts.kind]!;
    const rpc = createClient(StreamService, transport(g));
    const rows: { kind: string; key: string; last_sequence: number; events: number }[] = [];
    for (let pageToken = "", first = true; first || pageToken; first = false) {
      const r = await rpc.listStreams({ kind, limit: 1000, pageToken }, { headers: headers(g) });
      rows.push(...r.streams.map((s) => ({ kind: kindName(s.stream!.kind), key: s.stream!.key, last_sequence: Number(s.lastSequence), events: Number(s.eventCount) })));
      pageToken = r.nextPageToken;
    }
    if (opts.json) for (const row of rows) await emit(JSON.stringify(row) + "\n");
    else await emit(table(rows, ["kind", "key", "last_sequence", "events"]));
  });

const keys = program.command("keys").description("API keys: straight to MongoDB when MONGODB_URI is set, else the service's admin RPC (ADMIN_TOKEN)");
async function withKeyAdmin<T>(run: (api: KeyAdmin) => Promise<T>): Promise<T> {
  const admin = await openKeyAdmin(globals().url);
  try {
    return await run(admin.api);
  } finally {
    await admin.close();
  }
}
// `--project` is the program's option (EVENTS_PROJECT): here it names the key's project.
/** Seconds per unit of a --expires-in duration. */
const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
/** "90s", "30m", "12h", "7d", "2w" -> seconds. */
function durationSeconds(v: string): bigint {
  const m = /^(\d{1,9})([smhdw])$/.exec(v);
  if (!m || Number(m[1]) === 0) throw new InvalidArgumentError('a positive whole number and a unit s, m, h, d or w, e.g. "90d"');
  return BigInt(Number(m[1]) * DURATION_UNITS[m[2]!]!);
}
keys
  .command("create")
  .description("create a key for --project (printed once: store it)")
  .option("--name <label>", "a label", "")
  .option("--expires-in <duration>", "the key stops working after this long (90s, 30m, 12h, 7d, 2w); default: until revoked", durationSeconds)
  .action(async (opts: { name: string; expiresIn?: bigint }) => {
    const project = program.opts<Globals>().project;
    if (!project) throw usage("keys create needs --project <project>");
    const req = create(CreateApiKeyRequestSchema, { project, name: opts.name, ...(opts.expiresIn !== undefined ? { ttlSeconds: opts.expiresIn } : {}) });
    const r = await withKeyAdmin((api) => api.createApiKey(req));
    await emit(JSON.stringify({ id: r.id, project: r.project, key: r.key, ...(r.expiresAt !== undefined ? { expires_at: r.expiresAt } : {}) }) + "\n");
  });
keys
  .command("revoke")
  .description("revoke a key (exit 3 when there is no such live key)")
  .argument("<id>", "key id")
  .action(async (id: string) => {
    const r = await withKeyAdmin((api) => api.revokeApiKey(create(RevokeApiKeyRequestSchema, { id })));
    await emit(JSON.stringify({ id, revoked: r.revoked }) + "\n");
    if (!r.revoked) process.exitCode = EXIT.notFound;
  });
keys
  .command("list")
  .description("list keys (ids and labels, never the keys); with --project only that project's")
  .option("--json", "JSON lines instead of a table")
  .action(async (opts: { json?: boolean }) => {
    const project = program.opts<Globals>().project ?? "";
    const rows: Record<string, string | undefined>[] = [];
    await withKeyAdmin(async (api) => {
      for (let pageToken = "", first = true; first || pageToken; first = false) {
        const r = await api.listApiKeys(create(ListApiKeysRequestSchema, { project, limit: 1000, pageToken }));
        for (const k of r.keys) rows.push({ id: k.id, project: k.project, name: k.name, created_at: k.createdAt, expires_at: k.expiresAt, revoked_at: k.revokedAt });
        pageToken = r.nextPageToken;
      }
    });
    if (opts.json) for (const row of rows) await emit(JSON.stringify(row) + "\n");
    else await emit(table(rows, ["id", "project", "name", "created_at", "expires_at", "revoked_at"]));
  });

guardStdout();
try {
  await program.parseAsync();
  // Now, not when idle HTTP/2 sessions time out; stdout is written (emit waits for the pipe).
  process.exit(process.exitCode ?? EXIT.ok);
} catch (err) {
  // Commander has printed its own message for usage errors; --help and --version end here too.
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? EXIT.ok : EXIT.usage);
  const { line, code } = describeFailure(err, program.opts<Globals>().url);
  process.stderr.write(`agent-events: ${line}\n`);
  process.exit(code);
}
