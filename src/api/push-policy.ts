/**
 * Where Sailhouse push subscriptions may send requests. A push endpoint is a URL a caller chose,
 * fetched by the service: without a policy a push could point at the service itself (each push
 * publishing more events: amplification) or at addresses only the service can reach (cloud
 * metadata, loopback admin ports: a blind request forger). The policy (README, "Push endpoints"):
 *
 * - never this service: an endpoint whose path is one of the service's own paths (any host: two
 *   instances pushing at each other amplify just the same), or whose address and port are the
 *   service's listen address (loopback, the listen host, any local interface), in every mode;
 * - mode "strict" (AUTH=required): loopback, link-local, unspecified and cloud-metadata addresses
 *   and names are refused unless PUSH_ALLOW names them; private networks stay allowed (self-hosted
 *   workers);
 * - mode "local" (auth off on loopback, the embedded default): everything else is allowed.
 *
 * Names are resolved and every resolved address is checked; the same check runs again inside the
 * connection's own DNS lookup, so a name that re-resolves to a refused address between the check
 * and the request (DNS rebinding) is refused at connect time too. Redirects are not followed.
 */
import dns from "node:dns";
import http from "node:http";
import https from "node:https";
import net from "node:net";
import os from "node:os";

export type PushMode = "strict" | "local";

export interface PushPolicyOptions {
  mode: PushMode;
  /** PUSH_ALLOW: host names, IP addresses or CIDR ranges that "strict" would refuse but the operator allows. */
  allow: readonly string[];
  /** The service's listen address, once it listens. */
  self: () => { host: string; port: number } | undefined;
  /** True for a path this service serves (publish paths, RPCs): never a push target. */
  isOwnPath: (pathname: string) => boolean;
  /** DNS lookup (tests replace it). */
  lookup?: typeof dns.lookup;
}

/** Loopback, link-local, unspecified and cloud-metadata addresses ("strict" refuses them). */
const INTERNAL = new net.BlockList();
INTERNAL.addSubnet("127.0.0.0", 8, "ipv4");
INTERNAL.addSubnet("0.0.0.0", 8, "ipv4");
INTERNAL.addSubnet("169.254.0.0", 16, "ipv4"); // link-local, AWS/GCP/Azure metadata 169.254.169.254
INTERNAL.addAddress("100.100.100.200", "ipv4"); // Alibaba Cloud metadata
INTERNAL.addAddress("255.255.255.255", "ipv4");
INTERNAL.addAddress("::1", "ipv6");
INTERNAL.addAddress("::", "ipv6");
INTERNAL.addSubnet("fe80::", 10, "ipv6"); // link-local
INTERNAL.addAddress("fd00:ec2::254", "ipv6"); // AWS metadata over IPv6

/** Metadata and loopback names refused by "strict" before any lookup. */
const INTERNAL_NAMES = /^(localhost|.*\.localhost|metadata|metadata\.google\.internal|metadata\.goog|instance-data|instance-data\.ec2\.internal)\.?$/i;

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else the address itself. */
function unmap(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (m) return m[1]!;
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hex) {
    const hi = parseInt(hex[1]!, 16);
    const lo = parseInt(hex[2]!, 16);
    return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  return address;
}

function family(address: string): "ipv4" | "ipv6" {
  return net.isIPv4(address) ? "ipv4" : "ipv6";
}

/** The host of a URL without IPv6 brackets. */
function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, "$1");
}

function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
}

export class PushPolicy {
  readonly #opts: PushPolicyOptions;
  readonly #allowNames = new Set<string>();
  readonly #allowAddresses = new net.BlockList();

  constructor(opts: PushPolicyOptions) {
    this.#opts = opts;
    for (const entry of opts.allow) {
      const [addr, bits] = entry.split("/");
      if (addr && net.isIP(addr)) {
        if (bits !== undefined) this.#allowAddresses.addSubnet(addr, Number(bits), family(addr));
        else this.#allowAddresses.addAddress(addr, family(addr));
      } else this.#allowNames.add(entry.toLowerCase().replace(/\.$/, ""));
    }
  }

  get mode(): PushMode {
    return this.#opts.mode;
  }

  /** Why `address` (reached as `host`:`port`) is refused, or undefined. */
  refusedAddress(host: string, rawAddress: string, port: number): string | undefined {
    const address = unmap(rawAddress);
    const self = this.#opts.self();
    if (self && port === self.port && this.#isLocal(address, self.host)) return "the endpoint is this service's own listen address";
    if (this.#opts.mode === "local") return undefined;
    if (this.#allowNames.has(host.toLowerCase()) || this.#allowAddresses.check(address, family(address))) return undefined;
    if (INTERNAL.check(address, family(address))) return `the endpoint resolves to ${address}: loopback, link-local and cloud-metadata addresses are refused (allow them with PUSH_ALLOW)`;
    return undefined;
  }

  /** Why the endpoint is refused (undefined: allowed), resolving its name. */
  async check(endpoint: string): Promise<string | undefined> {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      return "not a URL";
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") return "only http and https endpoints are allowed";
    const statically = this.#checkStatic(url);
    if (statically !== undefined || net.isIP(hostOf(url))) return statically;
    let addresses: dns.LookupAddress[];
    try {
      addresses = await new Promise((resolve, reject) => (this.#opts.lookup ?? dns.lookup)(hostOf(url), { all: true }, (err, a) => (err ? reject(err) : resolve(a))));
    } catch {
      return `the endpoint's host ${JSON.stringify(hostOf(url).slice(0, 64))} does not resolve`;
    }
    for (const a of addresses) {
      const why = this.refusedAddress(hostOf(url), a.address, portOf(url));
      if (why) return why;
    }
    return undefined;
  }

  /** Loopback or unspecified, the listen host, or an address of one of this machine's interfaces. */
  #isLocal(address: string, listenHost: string): boolean {
    const a = address.toLowerCase();
    if (a === unmap(listenHost).toLowerCase()) return true;
    if (/^127\./.test(a) || a === "::1" || a === "0.0.0.0" || a === "::" || /^0\./.test(a)) return true;
    return localAddresses().has(a);
  }

  /** Checks that need no lookup: own paths, names refused by name, IP literals. */
  #checkStatic(url: URL): string | undefined {
    if (this.#opts.isOwnPath(url.pathname)) return "the endpoint is one of this service's own paths (a push to it would publish again)";
    const host = hostOf(url);
    if (net.isIP(host)) return this.refusedAddress(host, host, portOf(url));
    const self = this.#opts.self();
    if (self && portOf(url) === self.port && /^localhost\.?$/i.test(host)) return "the endpoint is this service's own listen address";
    if (this.#opts.mode === "strict" && INTERNAL_NAMES.test(host) && !this.#allowNames.has(host.toLowerCase())) return `the endpoint's host ${host} is a loopback or cloud-metadata name (allow it with PUSH_ALLOW)`;
    return undefined;
  }

  /**
   * POSTs `body` to the endpoint with node:http(s), checking the endpoint again and every address
   * its connection resolves to (DNS rebinding); no redirects are followed. Resolves with the
   * status code; rejects when refused, failed, past `timeoutMs` or aborted by `signal`.
   */
  async post(endpoint: string, headers: Record<string, string>, body: string, timeoutMs: number, signal?: AbortSignal): Promise<number> {
    const why = await this.check(endpoint);
    if (why) throw new PushRefusedError(why);
    const url = new URL(endpoint);
    const host = hostOf(url);
    const port = portOf(url);
    const base = this.#opts.lookup ?? dns.lookup;
    const lookup = ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
      base(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err);
        const list = addresses as dns.LookupAddress[];
        const bad = list.map((a) => this.refusedAddress(host, a.address, port)).find((w) => w !== undefined);
        if (bad) return callback(new PushRefusedError(bad));
        if (options.all) callback(null, list);
        else callback(null, list[0]!.address, list[0]!.family);
      });
    }) as unknown as net.LookupFunction;
    const mod = url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(url, { method: "POST", headers: { ...headers, "content-length": String(Buffer.byteLength(body)) }, lookup, signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs), agent: false }, (res) => {
        // The answer's body is not needed: read and drop it (bounded by the timeout).
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(body);
    });
  }
}

export class PushRefusedError extends Error {}

/** Addresses of this machine's interfaces (looked up each time: interfaces come and go). */
function localAddresses(): Set<string> {
  const out = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) for (const i of list ?? []) out.add(i.address.toLowerCase());
  return out;
}
