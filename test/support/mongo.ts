import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import readline from "node:readline";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../mongo-server");
const START_TIMEOUT_MS = 60_000;

export interface TestMongo {
  uri: string;
  kind: "external" | "mongo-java-server";
  /** Stops the server (a no-op for an external MONGODB_URI). */
  stop(): Promise<void>;
}

/**
 * A MongoDB for tests: `MONGODB_URI` when set (a real MongoDB), else mongo-java-server (in-memory
 * backend, oplog enabled) started on a free loopback port. `port` restarts it on a known port;
 * `args` are the server's flags (`--no-ttl`: refuse TTL indexes with error 238, as FerretDB does).
 * The server exits by itself when this process goes away (its stdin, a pipe from here, closes).
 */
export async function startTestMongo(port = 0, args: string[] = []): Promise<TestMongo & { port: number }> {
  const external = process.env["MONGODB_URI"];
  if (external) return { uri: external, kind: "external", port: 0, stop: async () => {} };
  const built = spawnSync("bash", [path.join(dir, "build.sh")], { encoding: "utf8" });
  if (built.status !== 0) {
    const why = built.error ? String(built.error) : `exit ${built.status ?? built.signal}`;
    throw new Error(`building the test MongoDB server (test/mongo-server/build.sh) failed: ${why}\n${built.stdout}\n${built.stderr}`);
  }
  const child = spawn("java", ["-Xss4m", "-jar", path.join(dir, "target/mongo-server.jar"), String(port), ...args], { stdio: ["pipe", "pipe", "inherit"] });
  let bound: number;
  try {
    bound = await listening(child);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { uri: `mongodb://127.0.0.1:${bound}/?directConnection=true`, kind: "mongo-java-server", port: bound, stop: () => stop(child) };
}

/** Resolves with the port of the server's "LISTENING 127.0.0.1:PORT" line. */
function listening(child: ChildProcess): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    const done = (err: Error | null, port = 0): void => {
      clearTimeout(timer);
      child.off("error", onError);
      child.off("exit", onExit);
      lines.close();
      child.stdout?.resume(); // drain anything printed later, so the server never blocks on a full pipe
      if (err) reject(err);
      else resolve(port);
    };
    const timer = setTimeout(() => done(new Error(`the test MongoDB server did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    const onError = (err: Error): void => done(new Error(`could not run the test MongoDB server (java -jar): ${err.message}`));
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      done(new Error(`the test MongoDB server exited before listening (${code ?? signal}); see its stderr above`));
    child.once("error", onError);
    child.once("exit", onExit);
    lines.on("line", (line) => {
      const m = /^LISTENING 127\.0\.0\.1:(\d+)$/.exec(line);
      if (m) done(null, Number(m[1]));
    });
  });
}

/** SIGTERM, then SIGKILL after 3 s; resolves once the process has exited. */
async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stdin?.end();
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}
