/**
 * Start-up failures as one actionable line: what went wrong and the setting that fixes it, never a
 * stack trace (LOG_LEVEL=debug or trace adds the stack on the following lines). main.ts prints the
 * line on stderr and exits 1.
 */
import { MongoServerSelectionError } from "mongodb";
import type { Config } from "./config.js";
import { ConfigError } from "./config.js";
import { isUnavailable } from "./store/mongo/errors.js";

/** The settings a start-up error is explained with (what was loaded, if loading got that far). */
export type StartupSettings = Pick<Config, "host" | "port" | "mongodbUri" | "mongodbTimeoutMs">;

/** A connection string without its password (user names stay: they help find the wrong one). */
export function redactUri(uri: string): string {
  return uri.replace(/^(mongodb(?:\+srv)?:\/\/[^:/@]*):[^@/]*@/, "$1:***@");
}

/** The first line of a message, at most `max` characters. */
function firstLine(text: string, max = 300): string {
  const line = text.split("\n", 1)[0]!.trim();
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/** One line saying why the service could not start and what to change. */
export function startupFailure(err: unknown, settings?: StartupSettings): string {
  if (err instanceof ConfigError) return err.message;
  const e = err instanceof Error ? (err as NodeJS.ErrnoException) : undefined;
  const where = settings ? `${settings.host}:${settings.port}` : "the address";
  switch (e?.code) {
    case "EADDRINUSE":
      return `port ${settings?.port ?? "?"} is already in use (${where}): stop the other process or set PORT to a free port`;
    case "EACCES":
      return `not allowed to listen on ${where} (ports below 1024 need privileges): set PORT to 1024 or above`;
    case "EADDRNOTAVAIL":
      return `HOST=${settings?.host ?? "?"} is not an address of this machine: set HOST to one of its addresses, or 0.0.0.0 for all`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      if (e.syscall === "getaddrinfo" && !settings?.mongodbUri) return `HOST=${settings?.host ?? "?"} does not resolve: set HOST to an address or a resolvable name`;
  }
  const uri = settings?.mongodbUri ? redactUri(settings.mongodbUri) : "MongoDB";
  if (e?.name === "MongoParseError" || e?.name === "MongoAPIError") return `MONGODB_URI is not usable (${firstLine(e.message)}): expected mongodb://host[:port][,host2…]/[db]?replicaSet=…`;
  if (e instanceof MongoServerSelectionError || isUnavailable(e)) {
    const ms = settings?.mongodbTimeoutMs;
    return `cannot reach MongoDB at ${uri}${ms ? ` within MONGODB_TIMEOUT_MS=${ms}` : ""} (${firstLine(e!.message)}): check MONGODB_URI and that the server is up${ms ? ", or raise MONGODB_TIMEOUT_MS" : ""}`;
  }
  if ((e as { code?: unknown } | undefined)?.code === 18) return `MongoDB at ${uri} rejected the credentials (${firstLine(e!.message)}): check the user, password and authSource in MONGODB_URI`;
  if (e?.name?.startsWith("Mongo")) return `MongoDB at ${uri} refused start-up: ${firstLine(e.message)}`;
  return `start-up failed: ${e ? firstLine(e.message) || e.name : firstLine(String(err))}`;
}
