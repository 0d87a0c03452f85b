/**
 * Runs the pinned Durable Streams conformance suite against the pinned reference server
 * (@durable-streams/server) and against this service in one vitest run, then prints both pass
 * counts side by side and every test whose outcome differs. Exit status 1 when the service fails
 * a test the reference passes. CONFORMANCE_STORE=mongo runs the service on MongoDB (MONGODB_URI, or
 * the test server).
 */
import { startVitest } from "vitest/node";

type Outcome = "passed" | "failed" | "skipped";

const vitest = await startVitest("test", [], {
  run: true,
  watch: false,
  include: ["test/conformance/compare.suite.ts"],
  reporters: [["default", { summary: false }]],
  // One file; its two servers run one after the other.
  maxWorkers: 1,
});
const results = new Map<string, Map<string, Outcome>>();
for (const mod of vitest?.state.getTestModules() ?? []) {
  for (const t of mod.children.allTests()) {
    const [target, ...rest] = t.fullName.split(" > ");
    const state = t.result().state;
    const outcome: Outcome = state === "passed" ? "passed" : state === "failed" ? "failed" : "skipped";
    if (!results.has(target!)) results.set(target!, new Map());
    results.get(target!)!.set(rest.join(" > "), outcome);
  }
}
await vitest?.close();

const count = (m: Map<string, Outcome> | undefined, o: Outcome): number => [...(m?.values() ?? [])].filter((x) => x === o).length;
const ref = results.get("reference");
const ours = results.get("service");
const row = (label: string, m: Map<string, Outcome> | undefined): string =>
  `${label.padEnd(36)} ${String(count(m, "passed")).padStart(7)} ${String(count(m, "failed")).padStart(7)} ${String(count(m, "skipped")).padStart(8)} ${String(m?.size ?? 0).padStart(6)}`;
console.log(`\n${"Durable Streams conformance".padEnd(36)} ${"passed".padStart(7)} ${"failed".padStart(7)} ${"skipped".padStart(8)} ${"total".padStart(6)}`);
console.log(row("reference (@durable-streams/server)", ref));
console.log(row(`this service (${process.env["CONFORMANCE_STORE"] ?? "memory"} store)`, ours));
let regressions = 0;
for (const [name, outcome] of ref ?? []) {
  const mine = ours?.get(name);
  if (mine === outcome) continue;
  if (outcome === "passed") regressions++;
  console.log(`  ${name}: reference ${outcome}, this service ${mine ?? "missing"}`);
}
process.exit(regressions > 0 ? 1 : 0);
