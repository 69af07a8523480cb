import { createCipheriv, createDecipheriv } from 'node:crypto';
import { Close, PeerRefusal } from './close-codes.js';

const TAG = 16;

/** The 12-byte AES-GCM nonce of frame `n`: 4 zero bytes, then n as a big-endian u64. */
export function frameNonce(n: bigint): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(n, 4);
  return iv;
}

/**
 * One direction of a session: AES-256-GCM with an implicit counter nonce, so
 * a frame that is replayed, dropped or reordered fails to decrypt.
 */
export class FrameCipher {
  readonly #key: Uint8Array;
  #counter = 0n;

  constructor(key: Uint8Array) {
    this.#key = key;
  }

  seal(plaintext: Uint8Array): Buffer {
    const c = createCipheriv('aes-256-gcm', this.#key, frameNonce(this.#counter++));
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  open(frame: Uint8Array): Buffer {
    if (frame.byteLength < TAG) throw new PeerRefusal(Close.frameInvalid, 'frame shorter than its tag');
    const d = createDecipheriv('aes-256-gcm', this.#key, frameNonce(this.#counter));
    d.setAuthTag(frame.subarray(frame.byteLength - TAG));
    try {
      const out = Buffer.concat([d.update(frame.subarray(0, frame.byteLength - TAG)), d.final()]);
      this.#counter++;
      return out;
    } catch {
      throw new PeerRefusal(Close.frameInvalid, 'frame failed authentication (tampered, replayed or reordered)');
    }
  }
}
