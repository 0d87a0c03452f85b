// The issue-20 ratio table `npm run bench` prints (bench/targets.mjs): ratios of medians, per-run
// ratios paired by repetition, "met" as a plain comparison in the right direction, and D met only
// when every run delivered everything once and in order.
import { describe, expect, it } from "vitest";

interface Row {
  label: string;
  ratio: number;
  perRun: number[];
  met: boolean;
  detail: string;
}
interface TargetsModule {
  TARGETS: { id: string; wl: string; metric: string; peer: string; higherIsBetter: boolean; bound: number; inOrder?: boolean }[];
  targetRows(all: unknown): Row[];
  targetsMarkdown(all: unknown): string;
}
// A path, not a literal: the bench scripts are plain .mjs without type declarations.
const modulePath: string = new URL("../../bench/targets.mjs", import.meta.url).href;
const { TARGETS, targetRows, targetsMarkdown } = (await import(modulePath)) as TargetsModule;

type Result = { rep: number; wl: string; system: string; r: Record<string, number | boolean> };
const ok = { complete: true, lost: 0, duplicates: 0, reordered: 0 };

/** Three repetitions of every target's workload: the service at `ours[i]`, the peer at `peer[i]`. */
function run(ours: number[], peer: number[], extra: (rep: number) => Record<string, number | boolean> = () => ok): Result[] {
  const out: Result[] = [];
  for (const t of TARGETS) {
    for (let i = 0; i < 3; i++) {
      out.push({ rep: i + 1, wl: t.wl, system: "event-service", r: { [t.metric]: ours[i]!, ...extra(i + 1) } });
      out.push({ rep: i + 1, wl: t.wl, system: t.peer, r: { [t.metric]: peer[i]!, ...ok } });
    }
  }
  return out;
}

describe("bench/targets.mjs", () => {
  it("rates every target by the ratio of medians, in its own direction, with per-run ratios paired by repetition", () => {
    // Service medians 20, peer medians 10: ratio 2 for every target.
    const rows = targetRows({ results: run([10, 20, 40], [5, 10, 20]) });
    expect(rows.map((r) => r.label)).toEqual(TARGETS.map((t) => expect.stringContaining(t.id) as unknown as string));
    for (const [i, t] of TARGETS.entries()) {
      const row = rows[i]!;
      expect(row.ratio).toBe(2);
      expect(row.perRun).toEqual([2, 2, 2]);
      // Twice the peer: met where more is better (bounds 1.0 and 1.5), not where less is.
      expect(row.met).toBe(t.higherIsBetter);
    }
    const under = targetRows({ results: run([1, 1, 1], [2, 2, 2]) });
    for (const [i, t] of TARGETS.entries()) expect(under[i]!.met).toBe(!t.higherIsBetter);
  });

  it("fails D when any run lost, duplicated or reordered an event, whatever its latency", () => {
    for (const flaw of [{ lost: 1 }, { duplicates: 1 }, { reordered: 2 }, { complete: false }]) {
      const rows = targetRows({ results: run([1, 1, 1], [10, 10, 10], (rep) => (rep === 2 ? { ...ok, ...flaw } : ok)) });
      const d = rows[TARGETS.findIndex((t) => t.id === "D")]!;
      expect(d.ratio).toBeCloseTo(0.1);
      expect(d.met, JSON.stringify(flaw)).toBe(false);
      expect(d.detail).toContain("2/3 runs");
    }
  });

  it("says a target was not measured instead of inventing a ratio, and lists the wrk paths against 0.6 × the floor", () => {
    const results = run([10, 10, 10], [10, 10, 10]).filter((x) => x.wl !== "C");
    const wrk = { rows: [{ target: "floor", label: "floor", rps: 100, vs_floor: 1, vs_floor_per_rep: [1] }, { target: "polos", label: "Polos", rps: 61, vs_floor: 0.61, vs_floor_per_rep: [0.61] }, { target: "kubiya", label: "Kubiya", rps: 59, vs_floor: 0.59, vs_floor_per_rep: [0.59] }] };
    const rows = targetRows({ results, wrk });
    const c = rows[TARGETS.findIndex((t) => t.id === "C")]!;
    expect(Number.isNaN(c.ratio)).toBe(true);
    expect(c.met).toBe(false);
    expect(c.detail).toMatch(/not measured/);
    expect(rows.slice(TARGETS.length).map((r) => [r.label, r.met])).toEqual([
      ["JSON Polos ≥ 0.6 × node:http floor (wrk)", true],
      ["JSON Kubiya ≥ 0.6 × node:http floor (wrk)", false],
    ]);
    expect(targetsMarkdown({ results, wrk })).toMatch(/\| JSON Kubiya ≥ 0\.6 × node:http floor \(wrk\) \| \*\*0\.59 ×\*\* \| 0\.59 \| 59 req\/s \| no \|/);
  });
});
