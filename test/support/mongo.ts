import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";
import readline from "node:readline";

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../mongo-server");

export interface TestMongo {
  uri: string;
  kind: "external" | "mongo-java-server";
  /** Stops the server (a no-op for an external MONGODB_URI). */
  stop(): Promise<void>;
}

/**
 * A MongoDB for tests: `MONGODB_URI` when set (a real MongoDB), else mongo-java-server (in-memory
 * backend, oplog enabled) started on a free loopback port. `port` restarts it on a known port.
 */
export async function startTestMongo(port = 0): Promise<TestMongo & { port: number }> {
  const external = process.env["MONGODB_URI"];
  if (external) return { uri: external, kind: "external", port: 0, stop: async () => {} };
  const built = spawnSync("bash", [path.join(dir, "build.sh")], { encoding: "utf8" });
  if (built.status !== 0) throw new Error(`building the test MongoDB server failed:\n${built.stdout}\n${built.stderr}`);
  const child = spawn("java", ["-Xss4m", "-jar", path.join(dir, "target/mongo-server.jar"), String(port)], { stdio: ["pipe", "pipe", "inherit"] });
  const bound = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the test MongoDB server did not start within 60 s")), 60_000);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the test MongoDB server exited with ${code}`)));
    readline.createInterface({ input: child.stdout! }).on("line", (line) => {
      const m = /^LISTENING 127\.0\.0\.1:(\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  return { uri: `mongodb://127.0.0.1:${bound}/?directConnection=true`, kind: "mongo-java-server", port: bound, stop: () => stop(child) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.stdin?.end();
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}
