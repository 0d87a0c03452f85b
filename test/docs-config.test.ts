/**
 * docs/configuration.md's table of service settings against src/config.ts itself: the variables
 * loadConfig reads (recorded by handing it an environment that notes every name asked for, so no
 * hand-kept list can drift), and the defaults the table shows (setting a variable to its documented
 * default must give the same configuration as leaving it unset).
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/config.js";

const PAGE = resolve(import.meta.dirname, "../docs/configuration.md");
const HEADING = "## Service settings (`src/config.ts`)";

interface Row {
  name: string;
  /** The default cell as written: a single `literal`, or words such as "unset". */
  defaultCell: string;
}

function documentedRows(): Row[] {
  const text = readFileSync(PAGE, "utf8");
  const at = text.indexOf(HEADING);
  if (at < 0) throw new Error(`${PAGE} has no "${HEADING}" section`);
  const section = text.slice(at + HEADING.length).split(/\n## /)[0]!;
  const rows: Row[] = [];
  for (const line of section.split("\n")) {
    const m = /^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|/.exec(line);
    if (m) rows.push({ name: m[1]!, defaultCell: m[2]!.trim() });
  }
  return rows;
}

/** Every variable name loadConfig looks up, whatever it then does with it. */
function variablesRead(): Set<string> {
  const read = new Set<string>();
  const env = new Proxy({} as NodeJS.ProcessEnv, {
    get(_t, key) {
      if (typeof key === "string") read.add(key);
      return undefined;
    },
    has(_t, key) {
      if (typeof key === "string") read.add(key);
      return false;
    },
  });
  loadConfig(env);
  return read;
}

describe("docs/configuration.md", () => {
  const rows = documentedRows();

  it("lists each variable once", () => {
    expect(rows.length).toBeGreaterThan(30);
    const names = rows.map((r) => r.name);
    expect(names.filter((n, i) => names.indexOf(n) !== i)).toEqual([]);
  });

  it("lists exactly the variables src/config.ts reads", () => {
    const documented = rows.map((r) => r.name).sort();
    expect(documented).toEqual([...variablesRead()].sort());
  });

  it("shows each literal default as the value the code uses", () => {
    const base = loadConfig({});
    const checked: string[] = [];
    for (const { name, defaultCell } of rows) {
      const literal = /^`([^`]+)`$/.exec(defaultCell);
      if (!literal) {
        // "unset", or a default derived from elsewhere ("from the URI, else `test`").
        expect(defaultCell, name).toMatch(/^(unset|from .+)$/);
        continue;
      }
      expect(loadConfig({ [name]: literal[1] }), `${name}=${literal[1]}`).toEqual(base);
      checked.push(name);
    }
    expect(checked.length).toBeGreaterThan(30);
  });

  it("documents variables whose default is unset as changing the configuration when set", () => {
    // An "unset" row must be one the code really treats as optional: setting it to a plausible
    // value is accepted and changes what loadConfig returns.
    const samples: Record<string, string> = {
      MONGODB_URI: "mongodb://127.0.0.1:27017/x",
      PUSH_ALLOW: "10.0.0.1",
      AUTH: "required",
      API_KEYS: "demo:k",
      ADMIN_TOKEN: "t",
    };
    const base = loadConfig({});
    for (const { name, defaultCell } of rows.filter((r) => r.defaultCell === "unset")) {
      expect(samples[name], `a sample value for ${name} in this test`).toBeDefined();
      expect(loadConfig({ [name]: samples[name]! }), name).not.toEqual(base);
    }
  });
});
