import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*_test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // e2e tests spawn whole crvm processes; two cores are shared between them.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
