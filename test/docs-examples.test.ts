/**
 * Every shell example in README.md and docs/*.md, run as written against one started service.
 *
 * The convention (docs/testing.md#the-docs-examples):
 * - ```sh          runs: each page's blocks in order, in one bash session per page (variables a
 *                  block sets, e.g. an id captured with jq, are there for the next block), with
 *                  `set -euo pipefail`, from the repository root. It must exit 0.
 * - ```sh setup    installs, builds or starts the service (the test has done that itself),
 * - ```sh deploy   needs a container engine, a cluster or a real MongoDB deployment,
 * - ```sh manual   needs a tool CI does not install (grpcurl) or a second terminal:
 *                  these three are only syntax-checked (bash -n).
 * - ```text output right after a ```sh block: lines its stdout must contain, in order (other
 *                  lines may come between); `…` stands for any text within a line.
 * - ```yaml        must parse.
 *
 * The service is the built one (dist/), on an ephemeral port; a page's first runnable block sets
 * `BASE=${BASE:-http://127.0.0.1:8080}` and the test passes BASE. curl runs with `fail-with-body`
 * (a curlrc), so an example answered 4xx/5xx fails unless the page says `|| true` and shows the
 * error in an output block. `npm link` puts the `agent-events` bin on PATH, into a prefix of the
 * test's own.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { startService, type Service } from "./support/process.js";

const ROOT = resolve(import.meta.dirname, "..");
const PAGES = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)];
const SHELLS = new Set(["sh", "bash"]);
const NOT_RUN = new Set(["setup", "deploy", "manual"]);
const BASE_LINE = "BASE=${BASE:-http://127.0.0.1:8080}";
/** The operator token the docs start the service with (docs/auth.md); the test's service has it too. */
const ADMIN_TOKEN = "demo-admin-token";
/**
 * A block is a few requests and CLI runs (seconds); one still running after this waits for something
 * that will not come (a follower without --count). Generous: the CI machine may be loaded.
 */
const BLOCK_TIMEOUT_MS = 120_000;

interface Block {
  page: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  tags: string[];
  code: string;
  /** The ```text output block right after it, if any. */
  output?: string;
}

function blocksOf(page: string): Block[] {
  const lines = readFileSync(join(ROOT, page), "utf8").split("\n");
  const blocks: Block[] = [];
  let lastEnd = -2;
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+)\s*([\w+-]*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const [, indent, fence, lang, info] = open as unknown as [string, string, string, string, string];
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      if (l.trim() === fence) break;
      body.push(l.startsWith(indent) ? l.slice(indent.length) : l.trimStart());
    }
    const block: Block = { page, line: i + 1, lang, tags: info.split(/\s+/).filter(Boolean), code: body.join("\n") + "\n" };
    const prev = blocks.at(-1);
    const onlyBlankBetween = lines.slice(lastEnd + 1, i).every((l) => l.trim() === "");
    if (lang === "text" && block.tags.includes("output") && prev && onlyBlankBetween && SHELLS.has(prev.lang) && prev.tags.length === 0) {
      prev.output = block.code;
    } else {
      blocks.push(block);
    }
    lastEnd = j;
    i = j;
  }
  return blocks;
}

const ALL = PAGES.flatMap(blocksOf);
const runnable = (b: Block) => SHELLS.has(b.lang) && b.tags.length === 0;
const where = (b: Block) => `${b.page}:${b.line}`;

/** Runs bash; past `timeoutMs` its whole process group is killed (a follower left running, say). */
function bash(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<{ code: number | null; stdout: string; stderr: string; timedOut: boolean }> {
  return new Promise((done, fail) => {
    const child = spawn("bash", ["--noprofile", "--norc", ...args], { cwd: ROOT, env: opts.env ?? process.env, stdio: ["pipe", "pipe", "pipe"], detached: true });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    }, opts.timeoutMs ?? BLOCK_TIMEOUT_MS);
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", fail);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, timedOut });
    });
    // A block that exits without reading its input closes the pipe first: not an error of the test.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

/** Lines of `expected` found in `actual`'s lines in order; `…` matches any text within a line. */
function missingOutput(expected: string, actual: string): string | undefined {
  const have = actual.split("\n").map((l) => l.replace(/\r$/, "").trimEnd());
  let at = 0;
  for (const want of expected.split("\n").map((l) => l.trimEnd()).filter((l) => l !== "")) {
    const re = new RegExp(`^${want.split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    while (at < have.length && !re.test(have[at]!)) at++;
    if (at === have.length) return want;
    at++;
  }
  return undefined;
}

/** The command part of each line (comments dropped), for the placeholder checks. */
function commands(code: string): string[] {
  return code
    .split("\n")
    .filter((l) => !l.trim().startsWith("#"))
    .map((l) => l.replace(/\s{2,}#.*$/, ""));
}

describe("docs: the fences", () => {
  it("every shell block is runnable or says why not (setup, deploy, manual)", () => {
    const bad = ALL.filter((b) => SHELLS.has(b.lang) && !(b.tags.length === 0 || (b.tags.length === 1 && NOT_RUN.has(b.tags[0]!))));
    expect(bad.map((b) => `${where(b)} \`\`\`${b.lang} ${b.tags.join(" ")}`)).toEqual([]);
    const strayOutput = ALL.filter((b) => b.tags.includes("output"));
    expect(strayOutput.map((b) => `${where(b)}: an output block must follow a runnable sh block`)).toEqual([]);
    expect(ALL.filter(runnable).length).toBeGreaterThan(20);
  });

  it("blocks that do not run are valid shell and YAML", async () => {
    for (const b of ALL.filter((b) => SHELLS.has(b.lang))) {
      const r = await bash(["-n"], { input: b.code });
      expect(r.stderr, `${where(b)} bash -n`).toBe("");
      expect(r.code, where(b)).toBe(0);
    }
    for (const b of ALL.filter((b) => b.lang === "yaml" || b.lang === "yml")) {
      expect(() => parseYaml(b.code), where(b)).not.toThrow();
    }
  });

  it("runnable blocks hold no placeholder a reader would have to fill in", () => {
    const problems: string[] = [];
    for (const b of ALL.filter(runnable)) {
      for (const c of commands(b.code)) {
        if (/<[A-Za-z][\w .-]*>/.test(c.replace(/<<-?\s*'?\w+'?/g, ""))) problems.push(`${where(b)}: placeholder in ${c.trim()}`);
        if (c.includes("…")) problems.push(`${where(b)}: "…" in ${c.trim()}`);
        if (/127\.0\.0\.1:8080|localhost:8080/.test(c) && c.trim() !== BASE_LINE) problems.push(`${where(b)}: a fixed address instead of $BASE in ${c.trim()}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("each page's first runnable block sets BASE, so every page can be followed on its own", () => {
    const pages = new Map<string, Block>();
    for (const b of ALL.filter(runnable)) if (!pages.has(b.page)) pages.set(b.page, b);
    for (const [page, first] of pages) {
      const firstCommand = commands(first.code).find((c) => c.trim() !== "");
      expect(firstCommand?.trim(), `${page}: first runnable block (line ${first.line})`).toBe(BASE_LINE);
    }
  });

  it("the service the docs start has the admin token the examples use", () => {
    for (const b of ALL.filter((b) => SHELLS.has(b.lang))) {
      for (const m of b.code.matchAll(/ADMIN_TOKEN=([^\s;]+)/g)) expect(m[1], where(b)).toBe(ADMIN_TOKEN);
    }
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, "")
    .replace(/\s/g, "-");
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, "utf8").replace(/^```[\s\S]*?^```/gm, "");
  return new Set([...text.matchAll(/^#{1,6}\s+(.+)$/gm)].map((m) => slug(m[1]!)));
}

describe("docs: links", () => {
  it("every relative link names a file that exists, and a heading it has", () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      const text = readFileSync(join(ROOT, page), "utf8").replace(/^```[\s\S]*?^```/gm, "");
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        const [path, hash] = target.split("#") as [string, string | undefined];
        const file = path === "" ? join(ROOT, page) : resolve(join(ROOT, dirname(page)), path);
        if (!existsSync(file)) {
          broken.push(`${page}: ${target} (no such file)`);
          continue;
        }
        if (hash && file.endsWith(".md") && !anchorsOf(file).has(hash)) broken.push(`${page}: ${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe("docs: the runnable examples, against one service", () => {
  let service: Service;
  let tmp: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    // The examples use what a reader has: curl and jq (.ci/run installs jq). Say so plainly rather
    // than fail in the first block that captures an id.
    const tools = await bash(["-c", "command -v curl && command -v jq"]);
    if (tools.code !== 0) throw new Error("the docs examples need curl and jq on PATH (Debian: apt-get install -y curl jq)");
    tmp = mkdtempSync(join(tmpdir(), "docs-examples-"));
    // The service as the docs start it: `ADMIN_TOKEN=… npm start` (in-memory store, loopback).
    service = await startService({ ADMIN_TOKEN, MONGODB_URI: "" });
    writeFileSync(join(tmp, ".curlrc"), "fail-with-body\n");
    env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^(EVENTS_|ADMIN_TOKEN$|MONGODB_|BASE$|API_KEYS$|AUTH$)/.test(k)));
    Object.assign(env, {
      BASE: service.url,
      CURL_HOME: tmp,
      NPM_CONFIG_PREFIX: join(tmp, "prefix"),
      PATH: [join(tmp, "prefix", "bin"), dirname(process.execPath), process.env["PATH"]].join(":"),
      NO_COLOR: "1",
    });
  });

  afterAll(async () => {
    service?.child.kill("SIGTERM");
    await service?.exited;
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  for (const page of PAGES) {
    const blocks = ALL.filter((b) => b.page === page && runnable(b));
    if (blocks.length === 0) continue;
    it(`${page}: ${blocks.length} block(s)`, async () => {
      const state = join(tmp, `${page.replace(/\W/g, "_")}.env`);
      for (const b of blocks) {
        const script = join(tmp, "block.sh");
        writeFileSync(script, b.code);
        // One session per page: what a block exports (set -a: every assignment) the next one sees.
        const driver = [
          "set -euo pipefail",
          `if [ -f '${state}' ]; then . '${state}'; fi`,
          "set -a",
          `. '${script}'`,
          "set +a",
          `export -p > '${state}.next'`,
        ].join("\n");
        const r = await bash(["-c", driver], { env, timeoutMs: BLOCK_TIMEOUT_MS });
        const report = `${where(b)} ${r.timedOut ? `still running after ${BLOCK_TIMEOUT_MS} ms (a command that follows forever?)` : `exited ${r.code}`}\n--- block\n${b.code}--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
        expect(r.code, report).toBe(0);
        if (b.output !== undefined) expect(missingOutput(b.output, r.stdout), `${report}\n(the output block's line not found in stdout)`).toBeUndefined();
        if (existsSync(`${state}.next`)) writeFileSync(state, readFileSync(`${state}.next`));
      }
    }, 15 * 60_000);
  }
});
