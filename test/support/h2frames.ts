/** Hand-built HTTP/2 frames, for tests that send what HTTP/2 client libraries never would. */

export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Frame types (RFC 9113 §6) and flags the tests use. */
export const FRAME = { DATA: 0, HEADERS: 1, SETTINGS: 4, CONTINUATION: 9 } as const;
export const FLAG = { END_STREAM: 1, END_HEADERS: 4 } as const;

export function h2Frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** HPACK "literal header field without indexing, new name" (RFC 7541 §6.2.2), no Huffman. */
export function hpack(headers: [string, string][]): Buffer {
  const str = (s: string): Buffer => {
    const b = Buffer.from(s, "latin1");
    const out: number[] = [];
    if (b.length < 127) out.push(b.length);
    else {
      out.push(127);
      let n = b.length - 127;
      while (n >= 128) {
        out.push((n % 128) + 128);
        n = Math.floor(n / 128);
      }
      out.push(n);
    }
    return Buffer.concat([Buffer.from(out), b]);
  };
  return Buffer.concat(headers.flatMap(([n, v]) => [Buffer.from([0]), str(n), str(v)]));
}
