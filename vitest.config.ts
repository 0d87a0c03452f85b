import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Suites start servers on ephemeral ports; keep the 2-core machine from thrashing.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
