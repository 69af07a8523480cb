import type { Duplex } from 'node:stream';

/**
 * Watches the raw bytes of an accepted WebSocket for a frame (or a fragmented
 * message) longer than `limit` and calls `onTooLarge` before `ws` would close
 * with 1009: y-websocket retries 1009 forever but stops on 4413. It only reads
 * frame headers and skips payloads; `ws` still does the real parsing.
 */
export function guardFrameSize(socket: Duplex, limit: number, onTooLarge: () => void): void {
  /** A frame header split across chunks (at most 14 bytes). */
  let partial = Buffer.alloc(0);
  let skip = 0;
  let message = 0;
  let fired = false;
  socket.on('data', (chunk: Buffer) => {
    if (fired) return;
    const buf = partial.length ? Buffer.concat([partial, chunk]) : chunk;
    partial = Buffer.alloc(0);
    let at = 0;
    while (at < buf.length) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length - at);
        skip -= n;
        at += n;
        continue;
      }
      const left = buf.length - at;
      if (left < 2) break;
      const len7 = buf[at + 1]! & 0x7f;
      const masked = (buf[at + 1]! & 0x80) !== 0;
      const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (left < need) break;
      const length = len7 === 126 ? buf.readUInt16BE(at + 2) : len7 === 127 ? Number(buf.readBigUInt64BE(at + 2)) : len7;
      const opcode = buf[at]! & 0x0f;
      const fin = (buf[at]! & 0x80) !== 0;
      if (opcode < 8) {
        message = opcode === 0 ? message + length : length;
        if (message > limit) {
          fired = true;
          onTooLarge();
          return;
        }
        if (fin) message = 0;
      }
      at += need;
      skip = length;
    }
    if (at < buf.length) partial = Buffer.from(buf.subarray(at));
  });
}
