// mongosh script (compose.yaml's mongo-init step): initiates the single-node replica set rs0 once,
// then waits for a writable primary. Idempotent: on a restart the set is already initiated.
const config = { _id: "rs0", members: [{ _id: 0, host: "mongo:27017" }] };
try {
  rs.status();
  print("replica set rs0 already initiated");
} catch (err) {
  if (err.codeName !== "NotYetInitialized") throw err;
  rs.initiate(config);
  print("replica set rs0 initiated");
}
for (let i = 0; i < 60 && !db.hello().isWritablePrimary; i++) sleep(1000);
if (!db.hello().isWritablePrimary) {
  print("no writable primary after 60 s");
  quit(1);
}
print("replica set rs0 has a primary");
