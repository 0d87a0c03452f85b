import { loadConfig } from "./config.js";
import { startApp } from "./server/app.js";

const app = await startApp(loadConfig());
let stopping = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    void app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
