#!/usr/bin/env node
/**
 * agent-events: publish, tail and list streams from a terminal (the generated Connect client).
 *   npm run cli -- publish polos orders '{"id": 1}'
 *   npm run cli -- tail topic/orders --from 0 --type created
 *   npm run cli -- streams
 *   npm run cli -- keys create --project acme      (also: npm run keys -- create --project acme)
 */
import { Command, Option } from "commander";
import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { EventSchema, StreamKind, StreamService } from "../../gen/events/v1/events_pb.js";
import { EventsService } from "../../gen/polos/v1/polos_pb.js";
import { ExecutionEventsService } from "../../gen/kubiya/v1/kubiya_pb.js";
import { SailhouseService } from "../../gen/sailhouse/v1/sailhouse_pb.js";
import { TaskEventsService } from "../../gen/terminaluse/v1/terminaluse_pb.js";
import { CreateApiKeyRequestSchema, ListApiKeysRequestSchema, RevokeApiKeyRequestSchema } from "../../gen/admin/v1/admin_pb.js";
import { openKeyAdmin, type KeyAdmin } from "./admin.js";

interface Globals {
  url: string;
  project?: string;
  key?: string;
  protocol: "grpc" | "connect";
}

const KINDS: Record<string, StreamKind> = { topic: StreamKind.TOPIC, execution: StreamKind.EXECUTION, task: StreamKind.TASK };

function transport(g: Globals): Transport {
  return g.protocol === "grpc" ? createGrpcTransport({ baseUrl: g.url }) : createConnectTransport({ baseUrl: g.url, httpVersion: "1.1", useBinaryFormat: true });
}

function headers(g: Globals): Record<string, string> {
  const h: Record<string, string> = {};
  if (g.key) h["authorization"] = `Bearer ${g.key}`;
  if (g.project) h["x-project-id"] = g.project;
  return h;
}

/** "topic/orders" → {kind, key}; a bare name is a topic. */
function parseStream(spec: string): { kind: StreamKind; key: string } {
  const i = spec.indexOf("/");
  const kind = i > 0 ? KINDS[spec.slice(0, i)] : undefined;
  if (i > 0 && kind === undefined) throw new Error(`unknown stream kind in ${JSON.stringify(spec)}: use topic/…, execution/… or task/…`);
  return kind === undefined ? { kind: StreamKind.TOPIC, key: spec } : { kind, key: spec.slice(i + 1) };
}

function parseJson(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new Error(`not valid JSON: ${(err as Error).message}`);
  }
}

function asObject(v: JsonValue, what: string): { [k: string]: JsonValue } {
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error(`${what} must be a JSON object`);
  return v;
}

const program = new Command()
  .name("agent-events")
  .description("Publish to, tail and list the streams of an agent-events service.")
  .addOption(new Option("--url <url>", "service URL").env("EVENTS_URL").default("http://127.0.0.1:8080"))
  .addOption(new Option("--project <project>", "project (X-Project-ID) when the service runs without keys").env("EVENTS_PROJECT"))
  .addOption(new Option("--key <key>", "API key").env("EVENTS_API_KEY"))
  .addOption(new Option("--protocol <protocol>", "RPC protocol").choices(["grpc", "connect"]).default("grpc"))
  .showHelpAfterError();

program
  .command("publish")
  .description("publish one event through a platform's API")
  .argument("<dialect>", "polos | kubiya | sailhouse | terminaluse")
  .argument("<stream>", "topic (polos, sailhouse), execution id (kubiya) or task id (terminaluse)")
  .argument("<json>", "the event's data as JSON (terminaluse: an object is a data part, a string a text part)")
  .option("--type <event_type>", "event type (polos, kubiya)", "cli")
  .action(async (dialect: string, stream: string, json: string, opts: { type: string }) => {
    const g = program.opts<Globals>();
    const t = transport(g);
    const h = { headers: headers(g) };
    const data = parseJson(json);
    let out: unknown;
    switch (dialect) {
      case "polos": {
        const r = await createClient(EventsService, t).publishEvents({ topic: stream, events: [{ eventType: opts.type, data: fromJson(ValueSchema, data) }] }, h);
        out = { sequence_ids: r.sequenceIds.map(Number), created_at: r.createdAt };
        break;
      }
      case "kubiya": {
        const r = await createClient(ExecutionEventsService, t).publishExecutionEvent({ executionId: stream, eventType: opts.type, data: asObject(data, "kubiya data") }, h);
        out = { success: r.success, execution_id: r.executionId, event_type: r.eventType };
        break;
      }
      case "sailhouse":
        out = { id: (await createClient(SailhouseService, t).sendEvent({ topicSlug: stream, data: asObject(data, "sailhouse data") }, h)).id };
        break;
      case "terminaluse": {
        const content = typeof data === "string" ? { part: { case: "text" as const, value: { text: data } } } : { part: { case: "data" as const, value: { data: asObject(data, "terminaluse data") } } };
        const r = await createClient(TaskEventsService, t).sendTaskEvent({ taskId: stream, content }, h);
        out = { id: r.id, sequence_id: Number(r.sequenceId), task_id: r.taskId };
        break;
      }
      default:
        throw new Error(`unknown dialect ${JSON.stringify(dialect)}: polos, kubiya, sailhouse or terminaluse`);
    }
    console.log(JSON.stringify(out, (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v)));
  });

program
  .command("tail")
  .description("follow a stream: prints each event as a JSON line; Ctrl-C stops")
  .argument("<stream>", "kind/key, e.g. topic/orders, execution/ex-1, task/<id> (a bare name is a topic)")
  .option("--from <seq>", "start after this sequence (0 = from the beginning; default: only new events)")
  .option("--type <event_type...>", "only these event types")
  .action(async (spec: string, opts: { from?: string; type?: string[] }) => {
    const g = program.opts<Globals>();
    const client = createClient(StreamService, transport(g));
    const stream = parseStream(spec);
    let after: bigint;
    if (opts.from !== undefined) {
      if (!/^\d+$/.test(opts.from)) throw new Error("--from must be a sequence number");
      after = BigInt(opts.from);
    } else {
      after = await headOf(client, stream, g);
    }
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    process.once("SIGTERM", () => abort.abort());
    // On a terminal, a live count/rate line on stderr; never when piped.
    const tty = process.stderr.isTTY;
    let count = 0;
    const started = Date.now();
    const ticker = tty
      ? setInterval(() => process.stderr.write(`\r\x1b[2K${count} events · ${(count / Math.max(1, (Date.now() - started) / 1000)).toFixed(1)}/s`), 500)
      : undefined;
    try {
      for await (const res of client.subscribe({ stream, afterSequence: after, eventTypes: opts.type ?? [] }, { signal: abort.signal, headers: headers(g) })) {
        for (const e of res.events) {
          count++;
          if (tty) process.stderr.write("\r\x1b[2K");
          process.stdout.write(JSON.stringify(toJson(EventSchema, e, { useProtoFieldName: true })) + "\n");
        }
      }
    } catch (err) {
      if (!(err instanceof ConnectError && err.code === Code.Canceled) && !abort.signal.aborted) throw err;
    } finally {
      if (ticker) {
        clearInterval(ticker);
        process.stderr.write(`\r\x1b[2K${count} events\n`);
      }
    }
  });

program
  .command("streams")
  .description("list the project's streams with their last sequence and event count")
  .option("--kind <kind>", "topic | execution | task")
  .option("--json", "JSON lines instead of a table")
  .action(async (opts: { kind?: string; json?: boolean }) => {
    const g = program.opts<Globals>();
    const kind = opts.kind === undefined ? StreamKind.UNSPECIFIED : KINDS[opts.kind];
    if (kind === undefined) throw new Error("--kind must be topic, execution or task");
    const rpc = createClient(StreamService, transport(g));
    const rows: { kind: string; key: string; last_sequence: number; events: number }[] = [];
    for (let pageToken = "", first = true; first || pageToken; first = false) {
      const r = await rpc.listStreams({ kind, limit: 1000, pageToken }, { headers: headers(g) });
      rows.push(...r.streams.map((s) => ({ kind: StreamKind[s.stream!.kind].toLowerCase(), key: s.stream!.key, last_sequence: Number(s.lastSequence), events: Number(s.eventCount) })));
      pageToken = r.nextPageToken;
    }
    if (opts.json) for (const row of rows) console.log(JSON.stringify(row));
    else console.table(rows);
  });

const keys = program
  .command("keys")
  .description("API keys: straight to MongoDB when MONGODB_URI is set, else the service's admin RPC (ADMIN_TOKEN)");
async function withKeyAdmin<T>(run: (api: KeyAdmin) => Promise<T>): Promise<T> {
  const admin = await openKeyAdmin(program.opts<Globals>().url);
  try {
    return await run(admin.api);
  } finally {
    await admin.close();
  }
}
// `--project` is the program's option (EVENTS_PROJECT): here it names the key's project.
keys
  .command("create")
  .description("create a key for --project (printed once: store it)")
  .option("--name <label>", "a label", "")
  .action(async (opts: { name: string }) => {
    const project = program.opts<Globals>().project;
    if (!project) throw new Error("keys create needs --project <project>");
    const r = await withKeyAdmin((api) => api.createApiKey(create(CreateApiKeyRequestSchema, { project, name: opts.name })));
    console.log(JSON.stringify({ id: r.id, project: r.project, key: r.key }));
  });
keys
  .command("revoke")
  .description("revoke a key")
  .argument("<id>", "key id")
  .action(async (id: string) => {
    const r = await withKeyAdmin((api) => api.revokeApiKey(create(RevokeApiKeyRequestSchema, { id })));
    console.log(JSON.stringify({ id, revoked: r.revoked }));
    if (!r.revoked) process.exitCode = 1;
  });
keys
  .command("list")
  .description("list keys (ids and labels, never the keys); with --project only that project's")
  .action(async () => {
    const r = await withKeyAdmin((api) => api.listApiKeys(create(ListApiKeysRequestSchema, { project: program.opts<Globals>().project ?? "" })));
    for (const k of r.keys) console.log(JSON.stringify({ id: k.id, project: k.project, name: k.name, created_at: k.createdAt, revoked_at: k.revokedAt }));
  });

async function headOf(client: ReturnType<typeof createClient<typeof StreamService>>, stream: { kind: StreamKind; key: string }, g: Globals): Promise<bigint> {
  for (let pageToken = "", first = true; first || pageToken; first = false) {
    const r = await client.listStreams({ kind: stream.kind, limit: 1000, pageToken }, { headers: headers(g) });
    const found = r.streams.find((s) => s.stream?.key === stream.key);
    if (found) return found.lastSequence;
    pageToken = r.nextPageToken;
  }
  return 0n;
}

program.parseAsync().catch((err: unknown) => {
  const msg = err instanceof ConnectError ? `${Code[err.code]}: ${err.rawMessage}` : err instanceof Error ? err.message : String(err);
  console.error(`agent-events: ${msg}`);
  process.exit(1);
});
