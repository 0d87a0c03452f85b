import type { WriteConcernSettings } from "mongodb";

/** Service settings, from the environment (see the README's configuration table). */
export interface Config {
  host: string;
  port: number;
  mongodbUri?: string;
  mongodbDb?: string;
  writeConcern: WriteConcernSettings;
  watchMode: "auto" | "changestream" | "poll";
  pollIntervalMs: number;
  holeTimeoutMs: number;
  sseKeepaliveMs: number;
  maxBodyBytes: number;
  shutdownTimeoutMs: number;
  logLevel: string;
}

function int(env: NodeJS.ProcessEnv, name: string, dflt: number, min = 0): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const watchMode = env["WATCH_MODE"] ?? "auto";
  if (watchMode !== "auto" && watchMode !== "changestream" && watchMode !== "poll") {
    throw new Error(`WATCH_MODE must be auto, changestream or poll, got ${JSON.stringify(watchMode)}`);
  }
  const w = env["MONGODB_WRITE_CONCERN"] ?? "majority";
  if (w !== "majority" && !/^\d+$/.test(w)) throw new Error(`MONGODB_WRITE_CONCERN must be "majority" or a number, got ${JSON.stringify(w)}`);
  const cfg: Config = {
    host: env["HOST"] ?? "127.0.0.1",
    port: int(env, "PORT", 8080),
    writeConcern: { w: w === "majority" ? w : Number(w) },
    watchMode,
    pollIntervalMs: int(env, "POLL_INTERVAL_MS", 100, 1),
    holeTimeoutMs: int(env, "HOLE_TIMEOUT_MS", 2000, 1),
    sseKeepaliveMs: int(env, "SSE_KEEPALIVE_MS", 15000, 100),
    maxBodyBytes: int(env, "MAX_BODY_BYTES", 1024 * 1024, 1024),
    shutdownTimeoutMs: int(env, "SHUTDOWN_TIMEOUT_MS", 10000, 0),
    logLevel: env["LOG_LEVEL"] ?? "info",
  };
  if (env["MONGODB_URI"]) cfg.mongodbUri = env["MONGODB_URI"];
  if (env["MONGODB_DB"]) cfg.mongodbDb = env["MONGODB_DB"];
  return cfg;
}
