// The container's HEALTHCHECK (Dockerfile): exit 0 when GET /readyz answers 200 (the service is up
// and its store answers), 1 otherwise. Plain Node: slim images have no curl or wget.
const host = !process.env.HOST || ["0.0.0.0", "::", "[::]"].includes(process.env.HOST) ? "127.0.0.1" : process.env.HOST;
const url = `http://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${process.env.PORT || "8080"}/readyz`;
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(4000) });
  const body = await res.text();
  if (res.status !== 200) {
    console.error(`${url}: ${res.status} ${body}`);
    process.exit(1);
  }
} catch (err) {
  console.error(`${url}: ${err.cause?.code ?? err.message}`);
  process.exit(1);
}
