import type { Duplex } from 'node:stream';

/**
 * Watches the raw bytes of an accepted WebSocket for a frame (or a fragmented
 * message) longer than `limit` and calls `onTooLarge` before `ws` would close
 * with 1009: y-websocket retries 1009 forever but stops on 4413. It only reads
 * frame headers and skips payloads; `ws` still does the real parsing.
 */
export function guardFrameSize(socket: Duplex, limit: number, onTooLarge: () => void): void {
  let header = Buffer.alloc(0);
  let skip = 0;
  let message = 0;
  let fired = false;
  socket.on('data', (chunk: Buffer) => {
    if (fired) return;
    let buf = chunk;
    while (buf.length) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length);
        skip -= n;
        buf = buf.subarray(n);
        continue;
      }
      header = Buffer.concat([header, buf]);
      buf = Buffer.alloc(0);
      if (header.length < 2) return;
      const len7 = header[1]! & 0x7f;
      const masked = (header[1]! & 0x80) !== 0;
      const extra = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
      const need = 2 + extra + (masked ? 4 : 0);
      if (header.length < need) return;
      const length = len7 === 126 ? header.readUInt16BE(2) : len7 === 127 ? Number(header.readBigUInt64BE(2)) : len7;
      const opcode = header[0]! & 0x0f;
      const fin = (header[0]! & 0x80) !== 0;
      if (opcode < 8) {
        message = opcode === 0 ? message + length : length;
        if (message > limit) {
          fired = true;
          onTooLarge();
          return;
        }
        if (fin) message = 0;
      }
      buf = header.subarray(need);
      header = Buffer.alloc(0);
      skip = length;
    }
  });
}
