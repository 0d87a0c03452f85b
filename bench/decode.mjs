// Decoding cost of one Subscribe response holding one event, full Event vs CompactEvent (protobuf-es).
//   npm run build && node bench/decode.mjs
import { create, toBinary, fromBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
const { SubscribeResponseSchema, StreamKind } = await import('../dist/gen/events/v1/events_pb.js');
const payload = JSON.stringify({ seq: 1, ts: 12345.678, id: 'abc', type: 'x', source: 'y', data: { pad: 'x'.repeat(100) } });
const full = toBinary(SubscribeResponseSchema, create(SubscribeResponseSchema, { events: [{ id: crypto.randomUUID(), stream: { kind: StreamKind.TOPIC, key: 'bench-D-1' }, sequence: 123n, data: { kind: { case: 'stringValue', value: payload } }, createdAt: timestampFromDate(new Date()) }] }));
const compact = toBinary(SubscribeResponseSchema, create(SubscribeResponseSchema, { compactEvents: [{ id: crypto.randomUUID(), sequence: 123n, dataJson: JSON.stringify(payload), createdAtMs: BigInt(Date.now()) }] }));
for (const [name, bytes] of [['full', full], ['compact', compact], ['full', full], ['compact', compact]]) {
  const N = 200000; const t0 = performance.now(); let x = 0;
  for (let i = 0; i < N; i++) { const r = fromBinary(SubscribeResponseSchema, bytes); x += r.events.length + r.compactEvents.length; }
  console.log(name, bytes.length, 'bytes', ((performance.now() - t0) * 1000 / N).toFixed(2), 'us/decode');
}
