import { loadConfig } from "./config.js";
import { startApp } from "./server/app.js";
import { startTracing } from "./server/tracing.js";

const config = loadConfig();
// Before the app: spans of the first requests are exported too. Off unless OTEL_* asks for traces.
const telemetry = await startTracing();
const app = await startApp(config);
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    // Graceful: in-flight publishes finish, streams end cleanly; bounded by SHUTDOWN_TIMEOUT_MS.
    app.close(config.shutdownTimeoutMs).then(
      () => telemetry.shutdown().finally(() => process.exit(0)),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
}
