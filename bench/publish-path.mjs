// In-process micro-benchmark of the publish path on the in-memory store: decode a 100-event
// PublishRequest, validate + sequence + store it (streamsApi.publish), encode the response; µs per event.
//   npm run build && node bench/publish-path.mjs
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
const { PublishRequestSchema, PublishResponseSchema, StreamKind } = await import('../dist/gen/events/v1/events_pb.js');
const { EventLog } = await import('../dist/src/core/log/index.js');
const { MemoryStore } = await import('../dist/src/store/memory/index.js');
const { streamsApi } = await import('../dist/src/api/streams.js');
const payload = (i) => JSON.stringify({ seq: i, ts: 12345.678, id: 'abcdefgh', type: 'bench', source: 'peers', data: { pad: 'x'.repeat(90) } });
const req = create(PublishRequestSchema, { stream: { kind: StreamKind.TOPIC, key: 'b' }, events: Array.from({ length: 100 }, (_, i) => ({ data: { kind: { case: 'stringValue', value: payload(i) } } })) });
const bytes = toBinary(PublishRequestSchema, req);
const store = new MemoryStore(); await store.init();
const log = new EventLog(store, {});
const api = streamsApi({ log });
const ctx = { signal: new AbortController().signal, binaryWire: true, project: 'p' };
const N = 3000;
for (let round = 0; round < 2; round++) {
  let t = { dec: 0, pub: 0, enc: 0 };
  for (let i = 0; i < N; i++) {
    const a = performance.now();
    const r = fromBinary(PublishRequestSchema, bytes);
    const b = performance.now();
    const res = await api.publish(r, ctx);
    const c = performance.now();
    toBinary(PublishResponseSchema, res);
    const d = performance.now();
    t.dec += b - a; t.pub += c - b; t.enc += d - c;
  }
  console.log(Object.fromEntries(Object.entries(t).map(([k, v]) => [k, (v * 1000 / N / 100).toFixed(2) + ' us/event'])));
}
