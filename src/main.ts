import { loadConfig } from "./config.js";
import { startApp } from "./server/app.js";

const config = loadConfig();
const app = await startApp(config);
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    // Graceful: in-flight publishes finish, streams end cleanly; bounded by SHUTDOWN_TIMEOUT_MS.
    app.close(config.shutdownTimeoutMs).then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
}
