/**
 * The container image and compose deployment, checked without a container engine (none here):
 * the Dockerfile linted (dockerfile-utils) and held to its promises (Node of .node-version,
 * production dependencies, non-root, tini, a health check that exists in the image); compose.yaml
 * validated against the Compose Specification schema and linted (dclint), its references followed
 * (mounted files, replica set name, start order); the Prometheus rules and the Grafana dashboard
 * parsed as PromQL with every metric they name served by the running service; and the image's
 * steps run outside a container: `npm ci --omit=dev` into a fresh directory, the service started
 * from it as a non-root user under tini, the HEALTHCHECK command run against it, SIGTERM.
 * What still needs an engine is listed in docs/deploy.md.
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parser } from "@prometheus-io/lezer-promql";
import { validate } from "dockerfile-utils";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startTestServer } from "./support/server.js";
import { startTestMongo, type TestMongo } from "./support/mongo.js";
import { built, freePort, run, startService } from "./support/process.js";

const ROOT = join(import.meta.dirname, "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");
const yaml = (path: string) => parseYaml(read(path)) as any;

/** Dockerfile instructions: continuation lines joined, comments and blank lines dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    if (!pending && /^\s*(#|$)/.test(raw)) continue;
    const line = pending + raw.trim();
    if (line.endsWith("\\")) {
      pending = line.slice(0, -1).trimEnd() + " ";
      continue;
    }
    pending = "";
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (m) out.push({ op: m[1]!.toUpperCase(), args: m[2]! });
  }
  return out;
}

/** The instructions of each stage (FROM … to the next FROM). */
function stages(all: { op: string; args: string }[]): { from: string; body: { op: string; args: string }[] }[] {
  const out: { from: string; body: { op: string; args: string }[] }[] = [];
  for (const i of all) {
    if (i.op === "FROM") out.push({ from: i.args, body: [] });
    else out.at(-1)?.body.push(i);
  }
  return out;
}

const dockerfile = instructions(read("Dockerfile"));
const [buildStage, depsStage, runtime] = stages(dockerfile) as [ReturnType<typeof stages>[number], ReturnType<typeof stages>[number], ReturnType<typeof stages>[number]];
const exec = (stage: typeof runtime, op: string): string[] => JSON.parse(stage.body.find((i) => i.op === op)!.args.replace(/^(--\S+\s+)*CMD\s+/, "")) as string[];

describe("Dockerfile", () => {
  it("lints clean (dockerfile-utils)", () => {
    expect(validate(read("Dockerfile")).map((d) => `${d.range.start.line + 1}: ${d.message}`)).toEqual([]);
  });

  it("builds on the Node of .node-version in every stage, with three stages", () => {
    const arg = dockerfile.find((i) => i.op === "ARG" && i.args.startsWith("NODE_VERSION="));
    expect(arg?.args).toBe(`NODE_VERSION=${read(".node-version").trim()}`);
    expect(stages(dockerfile).map((s) => s.from)).toEqual(["node:${NODE_VERSION}-slim AS build", "node:${NODE_VERSION}-slim AS deps", "node:${NODE_VERSION}-slim"]);
  });

  it("builds with `npm run build`, installs production dependencies only, and ships no dev dependency", () => {
    expect(buildStage.body.filter((i) => i.op === "RUN").map((i) => i.args)).toContain("npm run build");
    expect(depsStage.body.find((i) => i.op === "RUN")?.args).toMatch(/^npm ci --omit=dev /);
    const copiedFrom = runtime.body.filter((i) => i.op === "COPY" && i.args.startsWith("--from="));
    expect(copiedFrom.map((i) => i.args)).toEqual(["--from=deps /app/node_modules ./node_modules", "--from=build /src/dist ./dist"]);
  });

  it("runs as a non-root user under tini, the command npm start runs, and copies only files that exist", () => {
    expect(runtime.body.filter((i) => i.op === "USER").map((i) => i.args)).toEqual(["node"]);
    expect(exec(runtime, "ENTRYPOINT")).toEqual(["/usr/bin/tini", "--"]);
    const cmd = exec(runtime, "CMD");
    expect(`exec ${cmd.join(" ")}`).toBe((JSON.parse(read("package.json")) as { scripts: Record<string, string> }).scripts["start"]);
    const ignored = read(".dockerignore")
      .split("\n")
      .filter((l) => l && !l.startsWith("#"));
    for (const i of dockerfile.filter((d) => d.op === "COPY" && !d.args.startsWith("--from="))) {
      for (const src of i.args.split(/\s+/).slice(0, -1)) {
        expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
        expect(ignored, `COPY ${src} is excluded by .dockerignore`).not.toContain(src.split("/")[0]);
      }
    }
  });

  it("has a HEALTHCHECK whose command is a file the image copies (slim images have no curl)", () => {
    const hc = exec(runtime, "HEALTHCHECK");
    expect(hc[0]).toBe("node");
    const copied = runtime.body.filter((i) => i.op === "COPY" && !i.args.startsWith("--from=")).map((i) => i.args.split(/\s+/));
    expect(copied.some(([src, dest]) => `/app/${dest!.replace(/^\.\//, "")}` === hc[1] && existsSync(join(ROOT, src!)))).toBe(true);
  });
});

describe("compose.yaml", () => {
  const compose = yaml("compose.yaml");

  it("is valid against the Compose Specification schema and lints clean (dclint)", async () => {
    // Services are listed in start order (database, its init, the service, monitoring), not alphabetically.
    const r = await run(process.execPath, [join(ROOT, "node_modules/dclint/bin/dclint.cjs"), "compose.yaml", "--formatter", "json", "--disable-rule", "services-alphabetical-order", "--color", "false"]);
    const [report] = JSON.parse(r.stdout) as { messages: { rule: string; message: string }[] }[];
    expect(report!.messages.map((m) => `${m.rule}: ${m.message}`)).toEqual([]);
    expect(r.code).toBe(0);
  });

  it("mounts files that exist and builds from this Dockerfile", () => {
    expect(compose.services["agent-events"].build).toBe(".");
    for (const [name, svc] of Object.entries<any>(compose.services)) {
      for (const v of (svc.volumes ?? []) as string[]) {
        if (v.startsWith("./")) expect(existsSync(join(ROOT, v.split(":")[0]!)), `${name}: ${v}`).toBe(true);
        else expect(Object.keys(compose.volumes), `${name}: ${v}`).toContain(v.split(":")[0]);
      }
    }
  });

  it("runs MongoDB as the replica set the service names, initiated by a health-checked one-shot step before the service starts", async () => {
    const { mongo, "mongo-init": init, "agent-events": svc } = compose.services;
    const uri = new URL(svc.environment.MONGODB_URI);
    const replSet = mongo.command[mongo.command.indexOf("--replSet") + 1];
    expect(uri.searchParams.get("replicaSet")).toBe(replSet);
    expect(uri.host).toBe("mongo:27017");
    expect(mongo.healthcheck.test[0]).toBe("CMD");
    expect(init.depends_on).toEqual({ mongo: { condition: "service_healthy" } });
    expect(init.restart).toBe("no");
    expect(svc.depends_on).toEqual({ "mongo-init": { condition: "service_completed_successfully" } });
    // The init script: initiates that set with the service's address of MongoDB, and is valid JavaScript.
    const script = read("deploy/mongo/init-replica-set.js");
    expect(script).toContain(`_id: "${replSet}", members: [{ _id: 0, host: "${uri.host}" }]`);
    expect(init.command).toContain(`/deploy/${"init-replica-set.js"}`);
    const check = await run(process.execPath, ["--check", join(ROOT, "deploy/mongo/init-replica-set.js")]);
    expect(check.code, check.stderr).toBe(0);
  });

  it("gives the service longer than SHUTDOWN_TIMEOUT_MS to stop, and listens beyond loopback with keys in MongoDB", () => {
    const svc = compose.services["agent-events"];
    expect(Number(/^(\d+)s$/.exec(svc.stop_grace_period)![1]) * 1000).toBeGreaterThan(Number(svc.environment.SHUTDOWN_TIMEOUT_MS));
    expect(svc.environment.HOST).toBe("0.0.0.0");
    expect(svc.ports).toEqual([`127.0.0.1:${svc.environment.PORT}:${svc.environment.PORT}`]);
  });

  it("has Prometheus scrape the service and load the alert rules, Grafana read the dashboard from Prometheus", () => {
    const { prometheus, grafana, "agent-events": svc } = compose.services;
    const prom = yaml("deploy/prometheus/prometheus.yml");
    const mounted = (svcDef: any, hostPath: string) => (svcDef.volumes as string[]).find((v) => v.startsWith(hostPath + ":"))?.split(":")[1];
    expect(prom.rule_files).toEqual([mounted(prometheus, "./deploy/prometheus/alerts.yml")]);
    expect(mounted(prometheus, "./deploy/prometheus/prometheus.yml")).toBe(prometheus.command[0].split("=")[1]);
    expect(prom.scrape_configs.map((s: any) => [s.job_name, s.metrics_path, s.static_configs[0].targets])).toEqual([["agent-events", "/metrics", [`agent-events:${svc.environment.PORT}`]]]);
    const ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml").datasources[0];
    expect(ds.url).toBe(`http://prometheus:${prometheus.ports[0].split(":").at(-1)}`);
    const provider = yaml("deploy/grafana/provisioning/dashboards/agent-events.yml").providers[0];
    expect(mounted(grafana, "./deploy/grafana/dashboards")).toBe(provider.options.path);
    const dashboard = JSON.parse(read("deploy/grafana/dashboards/agent-events.json"));
    for (const p of dashboard.panels.filter((p: any) => p.type !== "row")) {
      expect(p.datasource.uid, p.title).toBe(ds.uid);
      for (const t of p.targets) expect(t.datasource.uid, p.title).toBe(ds.uid);
    }
  });
});

describe("alert rules and dashboard", () => {
  let served: Map<string, string>;
  beforeAll(async () => {
    const app = await startTestServer();
    try {
      const text = await (await fetch(`${app.url}/metrics`)).text();
      served = new Map([...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
    } finally {
      await app.close();
    }
  });

  /** The metric names an expression selects; fails on a syntax error. */
  function metricsOf(expr: string): string[] {
    const names: string[] = [];
    let error: number | undefined;
    parser.parse(expr).iterate({
      enter(n) {
        if (n.type.isError) error ??= n.from;
        if (n.name === "Identifier" && n.node.parent?.name === "VectorSelector") names.push(expr.slice(n.from, n.to));
      },
    });
    if (error !== undefined) throw new Error(`PromQL syntax error at ${error}: ${expr}`);
    return names;
  }

  /** A name the service serves: itself, or a histogram's _bucket/_sum/_count; `up` is Prometheus's own. */
  function exists(name: string): boolean {
    if (name === "up" || served.has(name)) return true;
    const m = /^(.*)_(bucket|sum|count)$/.exec(name);
    return !!m && ["histogram", "summary"].includes(served.get(m[1]!) ?? "");
  }

  const alerts = yaml("deploy/prometheus/alerts.yml");
  const rules: { alert: string; expr: string }[] = alerts.groups.flatMap((g: any) => g.rules);
  const dashboard = JSON.parse(read("deploy/grafana/dashboards/agent-events.json"));
  const targets: { title: string; expr: string }[] = dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((t: any) => ({ title: p.title, expr: t.expr })));

  it("alert rules: every expression parses, and names only metrics the service serves", () => {
    expect(rules.length).toBeGreaterThan(5);
    for (const r of rules) {
      const names = metricsOf(r.expr);
      expect(names.length, r.alert).toBeGreaterThan(0);
      expect(names.filter((n) => !exists(n)), r.alert).toEqual([]);
    }
  });

  it("dashboard: every panel query parses, and names only metrics the service serves", () => {
    expect(targets.length).toBeGreaterThan(10);
    for (const t of targets) expect(metricsOf(t.expr).filter((n) => !exists(n)), t.title).toEqual([]);
  });

  it("covers the service's own metrics: each appears in the dashboard, and the failure ones in an alert", () => {
    const own = [...served.keys()].filter((n) => !/^(process|nodejs)_/.test(n));
    const inDashboard = new Set(targets.flatMap((t) => metricsOf(t.expr)).map((n) => n.replace(/_(bucket|sum|count)$/, "")));
    expect(own.filter((n) => !inDashboard.has(n))).toEqual([]);
    const inAlerts = new Set(rules.flatMap((r) => metricsOf(r.expr)).map((n) => n.replace(/_(bucket|sum|count)$/, "")));
    for (const n of ["publish_failures_total", "store_errors_total", "errors_caught_total", "publish_duration_seconds", "delivery_lag_seconds", "limited_total"]) expect(inAlerts).toContain(n);
  });
});

describe("the image's steps, outside a container", () => {
  let mongo: TestMongo;
  let stage: string;
  afterAll(async () => {
    await mongo?.stop();
    if (stage) rmSync(stage, { recursive: true, force: true });
  });

  // The image's user: `node` (uid 1000) in the official images. As root here, the service runs as
  // that uid; as any other user, it is already not root.
  const asUser = process.getuid?.() === 0 ? { uid: 1000, gid: 1000 } : {};
  const tini = "/usr/bin/tini";

  it("npm ci --omit=dev into a fresh directory, started as a non-root user under tini: healthy, then SIGTERM drains and exits 0", async () => {
    if (!existsSync(tini)) {
      if (process.env["REQUIRE_TINI"]) throw new Error(`${tini} is missing: apt-get install tini`);
      console.warn(`${tini} missing (apt-get install tini): running node without it`);
    }
    mongo = await startTestMongo();
    // The deps stage: the same npm ci command, in a directory holding only package.json and the lock.
    stage = mkdtempSync(join(tmpdir(), "agent-events-image-"));
    chmodSync(stage, 0o755);
    for (const f of ["package.json", "package-lock.json"]) cpSync(join(ROOT, f), join(stage, f));
    const ci = depsStage.body.find((i) => i.op === "RUN")!.args.split(" && ")[0]!.split(/\s+/);
    const installed = await run("npm", ci.slice(1), { cwd: stage });
    expect(installed.code, installed.stderr).toBe(0);
    const pkg = JSON.parse(read("package.json")) as { version: string; dependencies: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(stage, "node_modules", dep)), dep).toBe(true);
    for (const dev of ["vitest", "typescript", "tsx", "dclint"]) expect(existsSync(join(stage, "node_modules", dev)), dev).toBe(false);
    // The runtime stage's other COPYs: the build output and the health check.
    built("src/main.js"); // fails when dist/ is missing or older than src/
    cpSync(join(ROOT, "dist"), join(stage, "dist"), { recursive: true });
    cpSync(join(ROOT, "deploy/healthcheck.mjs"), join(stage, "deploy/healthcheck.mjs"));

    const port = await freePort();
    const env = { NODE_ENV: "production", HOST: "0.0.0.0", PORT: String(port), MONGODB_URI: mongo.uri, MONGODB_DB: `image_${Date.now()}`, LOG_LEVEL: "info" };
    const cmd = [...(existsSync(tini) ? exec(runtime, "ENTRYPOINT") : []), ...exec(runtime, "CMD")];
    const svc = await startService(env, cmd, { cwd: stage, cleanEnv: true, ...asUser });
    try {
      // Not root: the service's own process runs as the image's user.
      const status = readFileSync(`/proc/${svc.pid}/status`, "utf8");
      expect(Number(/^Uid:\s+(\d+)/m.exec(status)![1])).not.toBe(0);
      if (existsSync(tini)) expect(svc.pid).not.toBe(svc.child.pid); // node is tini's child
      expect(svc.logs.map((l) => l.msg)).toContainEqual(expect.stringMatching(/^authentication: API keys required; create one with MONGODB_URI=/));

      // The HEALTHCHECK command as the image runs it (paths under /app are the stage here).
      const hc = exec(runtime, "HEALTHCHECK").map((a) => a.replace(/^\/app\//, `${stage}/`));
      const runEnv = { PATH: process.env["PATH"]!, ...env };
      const healthy = await run(hc[0]!, hc.slice(1), { cwd: stage, env: runEnv, ...asUser });
      expect(healthy.code, healthy.stderr).toBe(0);
      // The CLI the image links onto PATH.
      const version = await run(join(stage, "dist/src/cli/main.js"), ["--version"], { cwd: stage, env: runEnv, ...asUser });
      expect(version.stdout.trim()).toBe(pkg.version);

      svc.child.kill("SIGTERM");
      expect((await svc.exited).code).toBe(0);
      expect(svc.logs.at(-1)?.msg).toBe("stopped");
      const unhealthy = await run(hc[0]!, hc.slice(1), { cwd: stage, env: runEnv, ...asUser });
      expect(unhealthy.code).toBe(1);
      expect(unhealthy.stderr).toMatch(/ECONNREFUSED/);
    } finally {
      svc.child.kill("SIGKILL");
    }
  }, 300_000);
});

