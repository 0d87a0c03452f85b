/**
 * Runs the platforms' own Python SDKs (test/sdk/*.py, in the venv `bash test/sdk/setup.sh` makes)
 * against a started service. A script gets its target from the environment (SDK_BASE_URL,
 * SDK_API_KEY, SDK_PROJECT, SDK_ARGS as JSON) and prints one JSON document per line; the last line
 * is its result (see test/sdk/harness.py, which also keeps class names and field types of the SDK's
 * parsed objects for the assertions). Without the venv these tests skip; CI sets REQUIRE_PYTHON_SDKS=1
 * so that there a missing venv fails them instead.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import { it } from "vitest";

const SDK_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "sdk");
export const SDK_PYTHON = join(SDK_DIR, ".venv", "bin", "python");
export const pythonSdkAvailable = existsSync(SDK_PYTHON);
export const pythonSdkRequired = process.env["REQUIRE_PYTHON_SDKS"] === "1";

/** `it` for a real-SDK test: skipped without the venv, unless CI requires it (then it fails). */
export const itSdk: typeof it = ((name: string, fn: () => Promise<void>, timeout?: number) =>
  it.skipIf(!pythonSdkAvailable && !pythonSdkRequired)(
    name,
    async () => {
      if (!pythonSdkAvailable) throw new Error(`no ${SDK_PYTHON}: run 'bash test/sdk/setup.sh' (REQUIRE_PYTHON_SDKS=1 makes this a failure)`);
      await fn();
    },
    timeout ?? 60_000,
  )) as unknown as typeof it;

export interface SdkTarget {
  /** The service's base URL (App.url). */
  baseUrl: string;
  /** The API key to hand the SDK the way it takes one; empty or absent: none (auth off). */
  apiKey?: string;
  /** The project, for SDKs that name one (Polos's project id). */
  project?: string;
}

export interface SdkRunOptions extends SdkTarget {
  /** Test-specific arguments, as SDK_ARGS (JSON). */
  args?: Record<string, unknown>;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** A running SDK script: read its JSON lines as they come, write JSON lines to its stdin. */
export class PythonSdkProcess {
  readonly lines: any[] = [];
  stderr = "";
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #exit: Promise<number | null>;
  #waiters: (() => void)[] = [];
  #buf = "";

  /** `script`: a file in test/sdk/ run by the venv's Python, or `{ binary }`: a program built from test/sdk/ (Rust). */
  constructor(script: string | { binary: string }, opts: SdkRunOptions) {
    const [command, argv] = typeof script === "string" ? [SDK_PYTHON, [join(SDK_DIR, script)]] : [join(SDK_DIR, script.binary), []];
    this.#child = spawn(command, argv, {
      cwd: SDK_DIR,
      env: {
        PATH: process.env["PATH"] ?? "",
        HOME: process.env["HOME"] ?? "",
        PYTHONUNBUFFERED: "1",
        PYTHONDONTWRITEBYTECODE: "1",
        SDK_BASE_URL: opts.baseUrl,
        SDK_API_KEY: opts.apiKey ?? "",
        SDK_PROJECT: opts.project ?? "",
        SDK_ARGS: JSON.stringify(opts.args ?? {}),
        ...opts.env,
      },
    });
    this.#child.stdout.setEncoding("utf8").on("data", (d: string) => {
      this.#buf += d;
      let nl: number;
      while ((nl = this.#buf.indexOf("\n")) >= 0) {
        const line = this.#buf.slice(0, nl).trim();
        this.#buf = this.#buf.slice(nl + 1);
        if (!line) continue;
        try {
          this.lines.push(JSON.parse(line));
        } catch {
          this.stderr += `[stdout, not JSON] ${line}\n`;
        }
        this.#wake();
      }
    });
    this.#child.stderr.setEncoding("utf8").on("data", (d: string) => (this.stderr += d));
    this.#exit = new Promise((resolve) => this.#child.on("close", (code) => (this.#wake(), resolve(code))));
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), opts.timeoutMs ?? 45_000);
    void this.#exit.then(() => clearTimeout(timer));
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    w.forEach((f) => f());
  }

  /** Waits until the script has printed `n` lines (or fails with its stderr if it exits first). */
  async waitForLines(n: number, timeoutMs = 20_000): Promise<any[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length < n) {
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) throw new Error(`SDK script exited after ${this.lines.length}/${n} lines:\n${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`SDK script printed ${this.lines.length}/${n} lines in ${timeoutMs} ms:\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 200));
        this.#waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
    return this.lines.slice(0, n);
  }

  /** Sends one JSON line to the script's stdin (for scripts that wait on the test). */
  send(v: unknown): void {
    this.#child.stdin.write(JSON.stringify(v) + "\n");
  }

  /** Waits for exit; resolves to the last line (the script's result), rejects with stderr on failure. */
  async result(): Promise<any> {
    const code = await this.#exit;
    if (code !== 0) throw new Error(`SDK script failed (exit ${code}):\n${this.stderr.slice(-4000)}`);
    if (this.lines.length === 0) throw new Error(`SDK script printed no result:\n${this.stderr}`);
    return this.lines[this.lines.length - 1];
  }

  kill(): void {
    this.#child.kill("SIGKILL");
  }
}

/** Sailhouse's Rust SDK driver (test/sdk/rust), built by `cargo build` there; CI builds it and sets REQUIRE_RUST_SDK=1. */
export const RUST_SAILHOUSE = "rust/target/debug/sailhouse-sdk-check";
export const rustSdkAvailable = existsSync(join(SDK_DIR, RUST_SAILHOUSE));
export const rustSdkRequired = process.env["REQUIRE_RUST_SDK"] === "1";

/** Runs a program built from test/sdk/ to the end and returns its parsed result (its last JSON line). */
export function runSdkBinary(binary: string, opts: SdkRunOptions): Promise<any> {
  return new PythonSdkProcess({ binary }, opts).result();
}

/** Starts a script and leaves it running (for streams the test feeds while it reads). */
export function startPythonSdk(script: string, opts: SdkRunOptions): PythonSdkProcess {
  return new PythonSdkProcess(script, opts);
}

/** Runs a script to the end and returns its parsed result (its last JSON line). */
export function runPythonSdk(script: string, opts: SdkRunOptions): Promise<any> {
  return new PythonSdkProcess(script, opts).result();
}
