/**
 * Push endpoints cannot turn the service on itself or into a request forger: self (address or
 * paths) is refused in every mode; with API keys, loopback, link-local and metadata addresses are
 * refused unless allow-listed, also when a name re-resolves between the check and the connection
 * (DNS rebinding); each subscription is rate-bounded.
 */
import http from "node:http";
import type dns from "node:dns";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PushPolicy, PushRefusedError, type PushMode } from "../src/api/push-policy.js";
import type { App } from "../src/server/app.js";
import { startTestServer } from "./support/server.js";
import { eventually, stillServing } from "./support/raw.js";

/** A DNS stub: each name maps to a list of answers, one per lookup (the last repeats). */
function stubLookup(answers: Record<string, string[][]>): typeof dns.lookup {
  const calls: Record<string, number> = {};
  return ((host: string, _opts: unknown, cb: (err: Error | null, a?: dns.LookupAddress[]) => void) => {
    const list = answers[host];
    if (!list) return cb(Object.assign(new Error(`ENOTFOUND ${host}`), { code: "ENOTFOUND" }));
    const i = Math.min(calls[host] ?? 0, list.length - 1);
    calls[host] = (calls[host] ?? 0) + 1;
    cb(null, list[i]!.map((address) => ({ address, family: address.includes(":") ? 6 : 4 })));
  }) as unknown as typeof dns.lookup;
}

function policy(mode: PushMode, opts: { allow?: string[]; lookup?: typeof dns.lookup; selfPort?: number } = {}): PushPolicy {
  return new PushPolicy({
    mode,
    allow: opts.allow ?? [],
    self: () => ({ host: "127.0.0.1", port: opts.selfPort ?? 8080 }),
    isOwnPath: (p) => /^\/topics\/[^/]+\/events\/?$/.test(p) || p === "/events.v1.StreamService/Publish",
    ...(opts.lookup ? { lookup: opts.lookup } : {}),
  });
}

describe("the push policy", () => {
  const lookup = stubLookup({ "meta.test": [["169.254.169.254"]], "ok.test": [["10.1.2.3"]], "v6meta.test": [["fd00:ec2::254"]], "mixed.test": [["10.1.2.3", "127.0.0.1"]], localhost: [["127.0.0.1", "::1"]], "metadata.google.internal": [["169.254.169.254"]] });

  it("with API keys (strict) refuses loopback, link-local, metadata and unspecified addresses and names; private networks pass", async () => {
    const p = policy("strict", { lookup });
    for (const url of [
      "http://169.254.169.254/latest/meta-data/",
      "http://[fd00:ec2::254]/",
      "http://metadata.google.internal/computeMetadata/v1/",
      "http://metadata/",
      "http://127.0.0.1:9000/hook",
      "http://127.1.2.3/",
      "http://localhost:9000/",
      "http://app.localhost/",
      "http://[::1]:9000/",
      "http://[::ffff:127.0.0.1]:9000/",
      "http://[::ffff:a9fe:a9fe]/",
      "http://0.0.0.0:9000/",
      "http://[fe80::1]/",
      "http://100.100.100.200/",
      "http://meta.test/",
      "http://v6meta.test/",
      "http://mixed.test/",
    ]) {
      expect(await p.check(url), url).toBeDefined();
    }
    for (const url of ["http://10.0.0.5:8080/hook", "http://192.168.1.2/", "https://172.16.0.1/x", "http://ok.test/hook", "http://8.8.8.8/"]) {
      expect(await p.check(url), url).toBeUndefined();
    }
    expect(await p.check("http://nowhere.test/")).toMatch(/does not resolve/);
    expect(await p.check("ftp://10.0.0.1/")).toMatch(/http/);
  });

  it("lets PUSH_ALLOW name what strict would refuse, but never this service", async () => {
    const p = policy("strict", { allow: ["127.0.0.0/8", "metadata.google.internal", "169.254.169.254"], lookup });
    expect(await p.check("http://127.0.0.1:9000/hook")).toBeUndefined();
    expect(await p.check("http://metadata.google.internal/x")).toBeUndefined();
    expect(await p.check("http://169.254.169.254/x")).toBeUndefined();
    expect(await p.check("http://127.0.0.1:8080/hook")).toMatch(/own listen address/);
  });

  it("without API keys (local) allows local endpoints, except this service's address and paths", async () => {
    const p = policy("local", { lookup });
    expect(await p.check("http://127.0.0.1:9000/hook")).toBeUndefined();
    expect(await p.check("http://localhost:9000/hook")).toBeUndefined();
    expect(await p.check("http://169.254.169.254/")).toBeUndefined();
    expect(await p.check("http://127.0.0.1:8080/hook")).toMatch(/own listen address/);
    expect(await p.check("http://localhost:8080/hook")).toMatch(/own listen address/);
    expect(await p.check("http://[::1]:8080/hook")).toMatch(/own listen address/);
    expect(await p.check("http://0.0.0.0:8080/hook")).toMatch(/own listen address/);
    // Another host, but one of this service's paths (another instance, or this one behind a proxy).
    expect(await p.check("https://events.example.com/topics/orders/events")).toMatch(/own paths/);
    expect(await p.check("http://10.0.0.9:9000/events.v1.StreamService/Publish")).toMatch(/own paths/);
  });

  it("re-checks the address at connect time: a name that rebinds to a refused address is not fetched", async () => {
    let hits = 0;
    const receiver = http.createServer((_req, res) => {
      hits++;
      res.end();
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    const port = (receiver.address() as { port: number }).port;
    try {
      // First answer (the check) is a private address; the connection's own lookup gets loopback.
      const p = policy("strict", { lookup: stubLookup({ "rebind.test": [["10.1.2.3"], ["127.0.0.1"]] }) });
      const err = await p.post(`http://rebind.test:${port}/hook`, {}, "{}", 2000).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PushRefusedError);
      expect(String((err as Error).message)).toMatch(/127\.0\.0\.1/);
      // In local mode, rebinding onto this service's own port is refused the same way.
      const local = policy("local", { selfPort: port, lookup: stubLookup({ "rebind.test": [["10.1.2.3"], ["127.0.0.1"]] }) });
      expect(await local.post(`http://rebind.test:${port}/hook`, {}, "{}", 2000).catch((e: unknown) => e)).toBeInstanceOf(PushRefusedError);
      expect(hits).toBe(0);
      // A name that stays allowed is fetched (local mode, another port), and no redirect is followed.
      const ok = policy("local", { lookup: stubLookup({ "fine.test": [["127.0.0.1"]] }) });
      expect(await ok.post(`http://fine.test:${port}/hook`, {}, "{}", 2000)).toBe(200);
      expect(hits).toBe(1);
    } finally {
      receiver.close();
    }
  });
});

describe("push subscriptions on a running service", () => {
  let keyed: App;
  let open: App;
  const received: number[] = [];
  let receiver: http.Server;
  let receiverPort = 0;
  beforeAll(async () => {
    receiver = http.createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        received.push(Date.now());
        res.end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    receiverPort = (receiver.address() as { port: number }).port;
    keyed = await startTestServer({ env: { AUTH: "required", API_KEYS: "acme:key-acme" } });
    open = await startTestServer({ env: { PUSH_MAX_PER_SECOND: "5" }, workerIntervalMs: 50 });
  });
  afterAll(async () => {
    await keyed?.close();
    await open?.close();
    receiver?.close();
  });

  const put = (app: App, sub: string, endpoint: string, headers: Record<string, string> = {}) =>
    fetch(`${app.url}/topics/orders/subscriptions/${sub}`, { method: "PUT", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify({ type: "push", endpoint }) }).then(async (r) => ({ status: r.status, json: (await r.json()) as { error?: string; details?: { loc: unknown[] }[]; outcome?: string } }));

  it("with API keys: refuses pushes to itself and to metadata or loopback addresses, accepts private networks", async () => {
    const auth = { authorization: "Bearer key-acme" };
    for (const endpoint of [`${keyed.url}/hook`, "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", `http://127.0.0.1:${receiverPort}/hook`, "http://metadata.google.internal/"]) {
      const r = await put(keyed, "hook", endpoint, auth);
      expect(r.status, endpoint).toBe(400);
      expect(r.json.error, endpoint).toMatch(/push endpoint refused/);
      expect(r.json.details?.[0]?.loc, endpoint).toEqual(["body", "endpoint"]);
    }
    expect((await put(keyed, "hook", "http://10.0.0.5:8080/hook", auth)).json.outcome).toBe("created");
    expect(await stillServing(keyed)).toBeLessThan(1000);
  });

  it("without keys: refuses itself (its address and its paths), allows a local receiver and bounds its rate", async () => {
    expect((await put(open, "self", `${open.url}/hook`)).status).toBe(400);
    expect((await put(open, "self", `http://localhost:${open.port}/x`)).status).toBe(400);
    expect((await put(open, "loop", `http://127.0.0.1:${receiverPort}/topics/orders/events`)).status).toBe(400);
    expect((await put(open, "hook", `http://127.0.0.1:${receiverPort}/hook`)).json.outcome).toBe("created");
    const body = JSON.stringify({ data: { n: 1 } });
    // Deliveries start while the events are being sent: count time from the first send.
    const t0 = Date.now();
    for (let i = 0; i < 30; i++) expect((await fetch(`${open.url}/topics/orders/events`, { method: "POST", headers: { "content-type": "application/json" }, body })).status).toBe(201);
    await eventually(() => received.length >= 5, 5000, "first pushes");
    await new Promise((r) => setTimeout(r, 1500));
    const elapsed = (Date.now() - t0) / 1000;
    // 5 per second (a burst of 5 first): never more than the bucket allows.
    expect(received.length).toBeLessThanOrEqual(5 + Math.ceil(elapsed * 5) + 1);
    expect(received.length).toBeLessThan(30);
    expect(await stillServing(open)).toBeLessThan(1000);
  });
});
