import { readFileSync } from "node:fs";

/** This package's version (package.json sits one level up from src/, two from dist/src/). */
export const VERSION = ((): string => {
  for (const rel of ["../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "agent-events" && pkg.version) return pkg.version;
    } catch {
      // not there: try the next place
    }
  }
  return "unknown";
})();
