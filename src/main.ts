/**
 * The service's entry point (`npm start`, the container's command): settings from the
 * environment, start-up failures as one line and exit 1, SIGTERM/SIGINT drain and exit 0.
 */
import { pino } from "pino";
import { loadConfig, type Config } from "./config.js";
import { createLogger, startApp, type App } from "./server/app.js";
import { startTracing } from "./server/tracing.js";
import { startupFailure } from "./startup.js";

let config: Config | undefined;

/** A start-up failure: one line on stderr (see src/startup.ts), exit 1. */
function fail(err: unknown): never {
  process.stderr.write(`agent-events: ${startupFailure(err, config)}\n`);
  // The stack only when asked for: a start-up failure is a settings problem far more often than a bug.
  if (/^(debug|trace)$/.test(process.env["LOG_LEVEL"] ?? "") && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  process.exit(1);
}

try {
  config = loadConfig();
} catch (err) {
  fail(err);
}
const cfg: Config = config;
// Synchronous writes: the service logs little, and the last lines (the shutdown's) must be out,
// in order, before the process exits.
const log = createLogger(cfg.logLevel, pino.destination({ dest: 1, sync: true }));
let app: App | undefined;
let telemetry: Awaited<ReturnType<typeof startTracing>> | undefined;
let stopping = false;

/**
 * Graceful stop, bounded by SHUTDOWN_TIMEOUT_MS: in-flight publishes finish, streams end cleanly,
 * the store closes. Draining gets the timeout less a margin for closing; whatever still holds the
 * process at the timeout is abandoned (exit 1). A second signal exits at once.
 */
function stop(signal: NodeJS.Signals): void {
  if (stopping) {
    log.warn({ signal }, `${signal} again: exiting without waiting for the drain`);
    process.exit(1);
  }
  stopping = true;
  const timeoutMs = cfg.shutdownTimeoutMs;
  log.info({ signal, timeoutMs }, `${signal}: shutting down (draining for up to SHUTDOWN_TIMEOUT_MS=${timeoutMs} ms)`);
  if (!app) return process.exit(0); // still starting: nothing to drain
  const started = performance.now();
  setTimeout(() => {
    log.error({ timeoutMs }, `shutdown did not finish within SHUTDOWN_TIMEOUT_MS=${timeoutMs} ms; exiting anyway`);
    process.exit(1);
  }, timeoutMs).unref();
  app.close(Math.max(0, timeoutMs - Math.min(500, timeoutMs / 4))).then(
    async () => {
      // The last spans out (bounded by the timer above); an exporter failing now changes nothing.
      await telemetry?.shutdown().catch((err: unknown) => log.warn({ err }, "trace export at shutdown failed"));
      log.info({ ms: Math.round(performance.now() - started) }, "stopped");
      process.exit(0);
    },
    (err: unknown) => {
      log.error({ err }, "shutdown failed");
      process.exit(1);
    },
  );
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

try {
  // Before the app: spans of the first requests are exported too. Off unless OTEL_* asks for traces.
  telemetry = await startTracing();
  app = await startApp(cfg, { logger: log });
} catch (err) {
  fail(err);
}
