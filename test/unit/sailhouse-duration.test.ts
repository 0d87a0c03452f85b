/** Sailhouse durations (time_window, ttl, deduplication), as its SDKs send them. */
import { expect, it } from "vitest";
import { MAX_DURATION_MS, parseDuration } from "../../src/api/sailhouse.js";

it("reads the JS/docs forms and Go's time.Duration text", () => {
  expect(["30s", "10m", "2h", "1d", "500ms", " 5m "].map(parseDuration)).toEqual([30_000, 600_000, 7_200_000, 86_400_000, 500, 300_000]);
  // sdk-go's WithTimeWindow sends dur.String()
  expect(["6h0m0s", "1h30m0s", "1.5s", "2m3.5s", "1500us", "0s"].map(parseDuration)).toEqual([21_600_000, 5_400_000, 1500, 123_500, 1, 0]);
});

it("refuses malformed, oversized and out-of-range text", () => {
  for (const bad of ["", "5", "10x", "-1m", "m", "1.m", "1h 2m", "1e3s", "1".repeat(70) + "s", "9".repeat(20) + "d"]) expect(parseDuration(bad), bad).toBeUndefined();
  expect(parseDuration("876600h")).toBe(876_600 * 3_600_000); // 100 years: the limit itself
  expect(parseDuration("876601h")).toBeUndefined();
  expect(MAX_DURATION_MS).toBe(876_600 * 3_600_000);
});
