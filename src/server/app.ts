import { Counter, Gauge } from "prom-client";
import { pino, type DestinationStream, type Logger } from "pino";
import { ConfigError, type Config } from "../config.js";
import { EventLog } from "../core/log.js";
import type { Store } from "../core/store.js";
import { MemoryStore } from "../store/memory/index.js";
import type { MemoryBudget } from "../store/memory/budget.js";
import { MongoStore } from "../store/mongo/index.js";
import { polosApi } from "../api/polos.js";
import { kubiyaApi } from "../api/kubiya.js";
import { streamsApi } from "../api/streams.js";
import { recentCacheBytes } from "../api/common.js";
import { sailhouseApi } from "../api/sailhouse.js";
import { SailhouseWorker } from "../api/sailhouse-worker.js";
import type { SailhouseStore } from "../store/sailhouse.js";
import { MemorySailhouseStore } from "../store/memory/sailhouse.js";
import { MongoSailhouseStore } from "../store/mongo/sailhouse.js";
import { jsonRoutes, type Route } from "./gateway.js";
import { sendJson } from "./http/reply.js";
import { createPipeline, RouteTable, type PipelineRoute, type Surface } from "./pipeline.js";
import { OriginRule } from "./policy.js";
import { opsRoutes } from "./routes/ops.js";
import { rpcPolicy } from "./routes/rpc.js";
import { PushPolicy } from "../api/push-policy.js";
import { Metrics } from "./metrics.js";
import { releaseWriters, StallWatch } from "./stall.js";
import { openApiDocument } from "./openapi.js";
import { Auth, isLoopback, PROJECT } from "./auth.js";
import { adminApi } from "../api/admin.js";
import { hashKey, type KeyStore } from "../store/keys.js";
import { MemoryKeyStore } from "../store/memory/keys.js";
import { MongoKeyStore } from "../store/mongo/keys.js";
import { randomUUID } from "node:crypto";
import { kubiyaRoutes } from "./routes/kubiya.js";
import { polosRoutes } from "./routes/polos.js";
import { sailhouseRoutes } from "./routes/sailhouse.js";
import { terminalUseRoutes } from "./routes/terminaluse.js";
import { terminalUseApi } from "../api/terminaluse.js";
import type { TaskStore } from "../store/tasks.js";
import { MemoryTaskStore } from "../store/memory/tasks.js";
import { MongoTaskStore } from "../store/mongo/tasks.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { cachedCheck, registerHealth, registerReflection } from "./grpc.js";
import { InflightBytes, liveReaderInterceptor, LiveReaders, SubscriptionLimits } from "./limits.js";
import { DEFAULT_PROJECT } from "../api/common.js";
import { registerRpc, SERVICES } from "./rpc.js";
import { durableApi } from "../api/durable/index.js";
import { durableRoutes } from "./routes/durable.js";
import type { DurableStore } from "../store/durable.js";
import { MemoryDurableStore } from "../store/memory/durable.js";
import { MongoDurableStore } from "../store/mongo/durable.js";
import type { Req, Res } from "./sse.js";
import { boundaryInterceptor, errorSink, guardProcess } from "./boundary.js";
import { listen } from "./listener.js";
import { VERSION } from "../version.js";
import { rpcRoutes } from "./rpc-adapter.js";
import { UNAUTHENTICATED_PATHS, UnauthenticatedStreams } from "./unauthenticated.js";
import { tracing } from "../core/trace.js";
import { traceRequest } from "./tracing.js";

export interface App {
  /** The port actually bound (useful with PORT=0). */
  port: number;
  host: string;
  url: string;
  log: EventLog;
  store: Store;
  /** The route table: every route of every surface with its policy (the policy matrix test and docs read it). */
  routes: readonly PipelineRoute[];
  /**
   * Graceful stop: stop accepting, finish in-flight publishes, end streams cleanly, close the
   * store; connections still open after `deadlineMs` (default SHUTDOWN_TIMEOUT_MS) are dropped.
   */
  close(deadlineMs?: number): Promise<void>;
}

export interface AppOptions {
  /** Use this store instead of the one the config names. */
  store?: Store;
  logger?: Logger;
  /** The clock (ms since the epoch); tests move it to check expiry. */
  now?: () => number;
  /**
   * The longest the Sailhouse worker sleeps (default 30 s): how soon it sees sends scheduled and
   * push subscriptions changed on other instances (src/api/sailhouse-worker.ts).
   */
  workerIntervalMs?: number;
  /** A push delivery's timeout (default 10 s). */
  pushTimeoutMs?: number;
  /**
   * Install the process-level handlers for uncaught exceptions and unhandled rejections (log,
   * count, keep serving) while the service runs. Default true.
   */
  guardProcess?: boolean;
}

/** JSON logs; credentials never reach them, whatever a log call passes along. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    redact: {
      paths: ["req.headers.authorization", "req.headers.cookie", 'req.headers["x-agent-api-key"]', "headers.authorization", "headers.cookie", 'headers["x-agent-api-key"]', "authorization", "cookie", "key", "*.key", "apiKey", "adminToken", "secret", "*.secret"],
      censor: "[redacted]",
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

export function createStore(cfg: Config, logger: Logger): Store {
  if (!cfg.mongodbUri) return new MemoryStore({ retainEvents: cfg.memoryRetainEvents, maxBytes: cfg.memoryMaxBytes, sweepIntervalMs: cfg.expirySweepMs });
  return new MongoStore({
    uri: cfg.mongodbUri,
    ...(cfg.mongodbDb ? { dbName: cfg.mongodbDb } : {}),
    writeConcern: cfg.writeConcern,
    watch: cfg.watchMode,
    pollIntervalMs: cfg.pollIntervalMs,
    serverSelectionTimeoutMs: cfg.mongodbTimeoutMs,
    operationTimeoutMs: cfg.mongodbOperationTimeoutMs,
    sweepIntervalMs: cfg.expirySweepMs,
    log: (msg, fields) => logger.info(fields ?? {}, msg),
    warn: (msg, fields) => logger.warn(fields ?? {}, msg),
  });
}

/**
 * The in-memory ports share the event store's MEMORY_MAX_BYTES (store/memory/budget.ts). A store
 * passed in that is not a MemoryStore (a test's wrapper) leaves them unbounded.
 */
function memoryBudget(store: Store): MemoryBudget | undefined {
  return store instanceof MemoryStore ? store.budget : undefined;
}

/** Starts the service: one listener for HTTP/1.1 and h2c (gRPC, gRPC-Web, Connect, JSON paths, SSE). */
export async function startApp(cfg: Config, opts: AppOptions = {}): Promise<App> {
  const logger = opts.logger ?? createLogger(cfg.logLevel);
  // Keys are needed wherever the network can reach the service; on loopback the default is open,
  // whichever the store, so the Quick-start keeps working when MONGODB_URI is added.
  const authMode = cfg.auth ?? (isLoopback(cfg.host) ? "off" : "required");
  if (authMode === "off" && !isLoopback(cfg.host)) {
    throw new ConfigError(`refusing to listen on HOST=${cfg.host} with AUTH=off: remove AUTH=off (API keys are then required) or set HOST=127.0.0.1`);
  }
  const keysInDatabase = !!(opts.store?.durable ?? cfg.mongodbUri);
  if (authMode === "required" && !keysInDatabase && cfg.apiKeys.length === 0 && !cfg.adminToken) {
    throw new ConfigError(
      `refusing to start: API keys are required (${cfg.auth ? "AUTH=required" : `HOST=${cfg.host} is not loopback`}) and nobody could get one: set API_KEYS=project:key, or ADMIN_TOKEN=<secret> (then: agent-events keys create --project <project>), or MONGODB_URI (keys live in the database), or HOST=127.0.0.1`,
    );
  }
  const store = opts.store ?? createStore(cfg, logger);
  await store.init();
  const keys: KeyStore = store instanceof MongoStore ? new MongoKeyStore(store.connection) : new MemoryKeyStore(memoryBudget(store));
  await keys.init();
  for (const { project, key } of cfg.apiKeys) {
    if (!(await keys.findByHash(hashKey(key), new Date()))) await keys.insert({ id: randomUUID(), hash: hashKey(key), project, name: "API_KEYS", createdAt: new Date() });
  }
  const auth = new Auth(authMode, keys, cfg.authCacheMs);
  if (authMode === "off") logger.warn({ host: cfg.host }, "authentication is OFF (loopback only): callers name their project with X-Project-ID; set AUTH=required to use API keys");
  else logger.info({ host: cfg.host, reason: cfg.auth ? "AUTH=required" : "HOST is not loopback" }, `authentication: API keys required; create one with ${keysInDatabase ? "MONGODB_URI=… agent-events keys create --project <project>" : cfg.adminToken ? "ADMIN_TOKEN=… agent-events keys create --project <project>" : "API_KEYS=project:key at start-up"}, send it as Authorization: Bearer <key>`);
  if (!store.durable) logger.warn("using the in-memory store: events are NOT durable and are lost on restart (set MONGODB_URI for MongoDB)");
  else logger.info({ store: store.kind }, "store ready");

  const now = opts.now ?? Date.now;
  const metrics = new Metrics();
  const errors = errorSink(logger, (where) => metrics.errorsCaught.inc({ where }));
  const unguard = opts.guardProcess === false ? () => {} : guardProcess(process, errors);
  recentCacheBytes.value = cfg.recentCacheBytes;
  const log = new EventLog(store, {
    holeTimeoutMs: cfg.holeTimeoutMs,
    maxBatchEvents: cfg.maxBatchEvents,
    maxEventBytes: cfg.maxEventBytes,
    maxEventValues: cfg.maxJsonValues,
    responseBytes: cfg.responseBatchBytes,
    tailBytes: cfg.logTailBytes,
    pendingBytes: cfg.pendingPublishBytes,
    now,
    observer: metrics,
    log: (msg, fields) => logger.warn(fields ?? {}, msg),
  });
  metrics.watch(log);
  // Health checks, watches and /readyz need no credentials: at most one store ping per HEALTH_CACHE_MS.
  const storeHealthy = cachedCheck(async () => {
    await store.ping();
    return true;
  }, cfg.healthCacheMs);
  const inflight = new InflightBytes(cfg.maxInflightBytes);
  metrics.watchInflight(() => inflight.used);
  // Every live reader on every surface takes a subscription slot and is held by its key.
  const liveReaders = new LiveReaders(new SubscriptionLimits(cfg.maxSubscriptionsPerProject, cfg.maxSubscriptions), auth, () => metrics.limited.inc({ limit: "subscriptions" }));
  metrics.watchLiveReaders(() => liveReaders.limits.open);
  const deps = { log, now: () => new Date(now()) };
  const polos = polosApi(deps);
  const kubiya = kubiyaApi(deps);

  const sailhouseStore: SailhouseStore = store instanceof MongoStore ? new MongoSailhouseStore(store.connection) : new MemorySailhouseStore({ budget: memoryBudget(store) });
  await sailhouseStore.init();
  // Push endpoints: never this service (its address or its paths); with API keys, no loopback,
  // link-local or metadata addresses unless PUSH_ALLOW names them (src/api/push-policy.ts).
  let listening: { host: string; port: number } | undefined;
  let ownPath: (pathname: string) => boolean = () => false;
  const pushPolicy = new PushPolicy({
    mode: authMode === "required" ? "strict" : "local",
    allow: cfg.pushAllow,
    self: () => listening,
    isOwnPath: (p) => ownPath(p),
  });
  const sailhouse = sailhouseApi({ ...deps, sailhouse: sailhouseStore, pushPolicy, responseBytes: cfg.responseBatchBytes });
  const taskStore: TaskStore = store instanceof MongoStore ? new MongoTaskStore(store.connection) : new MemoryTaskStore(memoryBudget(store));
  await taskStore.init();
  const terminaluse = terminalUseApi({ ...deps, tasks: taskStore, responseBytes: cfg.responseBatchBytes });
  const durableStore: DurableStore = store instanceof MongoStore ? new MongoDurableStore(store.connection) : new MemoryDurableStore(memoryBudget(store));
  await durableStore.init();
  const durableStreams = durableApi({
    ...deps,
    durable: durableStore,
    config: { longPollTimeoutMs: cfg.durableLongPollMs, sseMaxMs: cfg.durableSseMaxMs, maxAppendBytes: cfg.durableMaxAppendBytes, readMaxBytes: cfg.durableReadMaxBytes, maxForkBytes: cfg.durableMaxForkBytes },
  });
  const streams = streamsApi({ ...deps, producers: durableStreams.producerPublish }, { windowBytes: cfg.publishStreamWindowBytes, responseBytes: cfg.responseBatchBytes });
  const pushed = new Counter({ name: "sailhouse_push_deliveries_total", help: "Sailhouse push deliveries, by outcome (delivered: a 2xx answer; failed: refused, timed out or unreachable)", labelNames: ["outcome"], registers: [metrics.registry] });
  const failingEndpoints = new Gauge({ name: "sailhouse_push_endpoints_failing", help: "Push subscriptions whose endpoint failed its last delivery (backing off)", registers: [metrics.registry] });
  const worker = new SailhouseWorker(sailhouse, {
    rescanMs: opts.workerIntervalMs ?? 30_000,
    pushTimeoutMs: opts.pushTimeoutMs ?? 10_000,
    pushConcurrency: 4,
    now,
    log: logger,
    errors,
    post: (e, h, b, t, signal) => pushPolicy.post(e, h, b, t, signal),
    maxPerSecond: cfg.pushMaxPerSecond,
    report: { pushed: (outcome) => pushed.inc({ outcome }), failing: (n) => failingEndpoints.set(n) },
  });

  const admin = adminApi(keys, cfg.adminToken, () => new Date(now()), { responseBytes: cfg.responseBatchBytes });
  const gatewayRoutes = { polos: polosRoutes(polos), kubiya: kubiyaRoutes(kubiya), sailhouse: sailhouseRoutes(sailhouse), terminaluse: terminalUseRoutes(terminaluse) };
  const jsonOptions = { maxBodyBytes: cfg.maxBodyBytes, bodyTimeoutMs: cfg.requestTimeoutMs, sseKeepaliveMs: cfg.sseKeepaliveMs, errorQuoteBytes: cfg.errorQuoteBytes, maxJsonValues: cfg.maxJsonValues };
  const rpc = rpcRoutes({
    errors,
    routes(router) {
      registerRpc(router, { streams, polos, kubiya, sailhouse, admin, terminaluse });
      registerHealth(router, SERVICES, storeHealthy, { watchIntervalMs: 5000, watchMaxMs: cfg.healthWatchMaxMs });
      registerReflection(router, [...SERVICES, Health], cfg.requestTimeoutMs);
    },
    policyOf: rpcPolicy(cfg.maxBodyBytes),
    readMaxBytes: cfg.maxBodyBytes,
    interceptors: [boundaryInterceptor(errors), liveReaderInterceptor(liveReaders, (req) => req.contextValues.get(PROJECT) ?? DEFAULT_PROJECT)],
  });
  // The one route table: every surface, each route with its policy (src/server/pipeline.ts).
  const table = new RouteTable([
    ...(Object.entries(gatewayRoutes) as [Surface, Route[]][]).flatMap(([surface, routes]) => jsonRoutes(surface, routes, jsonOptions)),
    ...durableRoutes(durableStreams, { maxBodyBytes: cfg.durableMaxAppendBytes, bodyTimeoutMs: cfg.requestTimeoutMs }),
    ...rpc,
    ...opsRoutes({
      storeHealthy,
      storeKind: store.kind,
      openapi: openApiDocument(Object.values(gatewayRoutes).flat(), VERSION),
      metrics: { contentType: metrics.registry.contentType, text: () => metrics.registry.metrics() },
    }),
  ]);
  ownPath = (p) => table.serves(p);
  // Requests that are streams (client and bidi RPCs): no body deadline, and only the chunk being read counts in flight.
  const streamingRequests = new Set(table.routes.filter((r) => r.policy.body === "stream").map((r) => r.path));
  const handler = createPipeline(table, {
    auth,
    origins: new OriginRule(authMode, cfg.corsOrigins),
    liveReaders,
    requests: metrics.requests,
    errors,
    log: logger,
    errorQuoteBytes: cfg.errorQuoteBytes,
  });

  const stalls = new StallWatch({
    stallTimeoutMs: cfg.stallTimeoutMs,
    backlogBytes: cfg.backlogBytes,
    maxUnsentBytes: cfg.maxUnsentBytes,
    onCut(reason, req, unsent) {
      metrics.cut.inc({ reason });
      const why = { stalled: "client stopped reading", backlog: "too much unsent for a client", budget: "the instance's unsent-bytes budget (MAX_UNSENT_BYTES) is full and this reader is the slowest" }[reason];
      logger.warn({ reason, path: req.url, unsentBytes: unsent }, `${why}; response cut off`);
    },
  });
  metrics.watchUnsent(() => stalls.unsentBytes);

  // Requests being served, so shutdown can wait for them; once shutting down, new requests are
  // refused with 503 and HTTP/1.1 connections close after their response.
  let inFlight = 0;
  let shuttingDown = false;
  const unauthenticated = new UnauthenticatedStreams(cfg.maxUnauthenticatedStreams, () => metrics.limited.inc({ limit: "unauthenticated_streams" }));
  const serve = (req: Req, res: Res): void => {
    if (shuttingDown) {
      // gRPC clients read HTTP 503 as `unavailable`, a code they retry.
      if (req.httpVersionMajor === 1) res.setHeader("connection", "close");
      sendJson(res, 503, { error: "the service is shutting down; retry" });
      return;
    }
    // Health watches and reflection need no key: their own small cap, refused before any RPC work.
    if (!unauthenticated.admit(req, res)) return;
    inFlight++;
    const path = (req.url ?? "").split("?", 2)[0]!;
    const giveBack = inflight.track(req, streamingRequests.has(path), () => metrics.limited.inc({ limit: "inflight_bytes" }));
    res.once("close", () => {
      inFlight--;
      giveBack();
      releaseWriters(res);
    });
    stalls.track(req, res);
    if (tracing.on) traceRequest(req, res, path, () => handler(req as never, res as never));
    else handler(req as never, res as never);
  };

  const listener = await listen({
    host: cfg.host,
    port: cfg.port,
    requestTimeoutMs: cfg.requestTimeoutMs,
    idleTimeoutMs: cfg.idleTimeoutMs,
    maxConnections: cfg.maxConnections,
    maxConcurrentStreams: cfg.maxConcurrentStreams,
    streamingRequestPaths: streamingRequests,
    unauthenticatedPaths: UNAUTHENTICATED_PATHS,
    errors,
    limited: (limit) => metrics.limited.inc({ limit }),
    serve,
  });
  const url = listener.url;
  listening = { host: listener.host, port: listener.port };
  worker.start();
  logger.info({ url, store: store.kind }, "listening (HTTP/1.1 + h2c: gRPC, gRPC-Web, Connect, JSON, SSE)");

  let closing: Promise<void> | undefined;
  return {
    port: listener.port,
    host: listener.host,
    url,
    log,
    store,
    routes: table.routes,
    close(deadlineMs = cfg.shutdownTimeoutMs) {
      closing ??= (async () => {
        // 1. Stop accepting connections; tell HTTP/2 clients to go away once their calls finish.
        shuttingDown = true;
        const stopped = listener.stop();
        // 2. Let publishes already received reach the store (they are acked as usual).
        const deadline = Date.now() + deadlineMs;
        const until = (p: Promise<unknown>): Promise<unknown> => Promise.race([p, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
        await until(log.idle());
        // 3. End every subscription cleanly (SSE streams end, RPC streams complete), stop the worker.
        await log.close();
        await until(worker.stop());
        // 4. Wait for the last responses to be written, then drop whatever is left.
        await until(
          (async () => {
            while (inFlight > 0) await new Promise((r) => setTimeout(r, 5));
          })(),
        );
        listener.destroyAll();
        await stopped;
        stalls.close();
        auth.close();
        await store.close();
        unguard();
      })();
      return closing;
    },
  };
}
