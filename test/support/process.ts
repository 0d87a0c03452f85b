/** The built service and CLI as separate processes, the way an operator or a supervisor runs them. */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import net from "node:net";
import { join, resolve } from "node:path";
import readline from "node:readline";

const ROOT = resolve(import.meta.dirname, "../..");

function newestUnder(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestUnder(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * The path of a built file (dist/…), failing with what to run when the build is missing or older
 * than the sources: the tests spawn what `npm start` and the `agent-events` bin run.
 */
export function built(rel: string): string {
  const path = join(ROOT, "dist", rel);
  let mtime: number;
  try {
    mtime = statSync(path).mtimeMs;
  } catch {
    throw new Error(`${path} is missing: run npm run build first`);
  }
  if (mtime < Math.max(newestUnder(join(ROOT, "src")), newestUnder(join(ROOT, "gen")))) throw new Error(`dist/ is older than src/: run npm run build first`);
  return path;
}

export interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (stdin: `input`, or nothing), collecting its output. */
export function run(cmd: string, args: string[], opts: SpawnOptions & { input?: string } = {}): Promise<Exited> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, ...opts, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code, signal) => resolveRun({ code, signal, stdout, stderr }));
    child.stdin!.on("error", () => {}); // a process that exits before reading its input
    child.stdin!.end(opts.input ?? "");
  });
}

export interface Service {
  child: ChildProcess;
  url: string;
  /** The pid the service logs (under `npm start`, the node process, not npm's). */
  pid: number;
  /** Every JSON log line so far. */
  logs: { msg?: string; [k: string]: unknown }[];
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts the service (default: `node dist/src/main.js`) on an ephemeral loopback port and waits for
 * its "listening" line; no deadline of its own (the test's timeout bounds it on a busy machine).
 */
export function startService(
  env: Record<string, string>,
  command: string[] = [process.execPath, built("src/main.js")],
  opts: { cwd?: string; uid?: number; gid?: number; cleanEnv?: boolean } = {},
): Promise<Service> {
  const base = opts.cleanEnv ? { PATH: process.env["PATH"]! } : { ...process.env, PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info" };
  const { cleanEnv: _, ...spawnOpts } = opts;
  const child = spawn(command[0]!, command.slice(1), { cwd: ROOT, ...spawnOpts, env: { ...base, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const logs: Service["logs"] = [];
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once("exit", (code, signal) => r({ code, signal })));
  return new Promise((resolveStart, reject) => {
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      if (!line.startsWith("{")) return; // npm's banner
      const rec = JSON.parse(line) as Service["logs"][number];
      logs.push(rec);
      if (rec.msg?.startsWith("listening") && typeof rec["url"] === "string") resolveStart({ child, url: rec["url"], pid: rec["pid"] as number, logs, stderr: () => stderr, exited });
    });
    void exited.then(({ code }) => reject(new Error(`the service exited (${code}) before listening: ${stderr}`)));
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago (nothing listens on it now). */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
