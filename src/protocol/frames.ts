import { createCipheriv, createDecipheriv, type CipherGCM, type DecipherGCM } from 'node:crypto';
import { Close, PeerRefusal } from './close-codes.js';

const TAG = 16;

/** The 12-byte AES-GCM nonce of frame `n`: 4 zero bytes, then n as a big-endian u64. */
export function frameNonce(n: bigint): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(n, 4);
  return iv;
}

type Ahead = { readonly dir: 'seal'; readonly c: CipherGCM } | { readonly dir: 'open'; readonly c: DecipherGCM };

/**
 * One direction of a session: AES-256-GCM with an implicit counter nonce, so
 * a frame that is replayed, dropped or reordered fails to decrypt.
 */
export class FrameCipher {
  readonly #key: Uint8Array;
  #counter = 0n;
  /** A cipher made by prepare() for frame #counter; dropped whenever the counter moves. */
  #ahead: Ahead | undefined;

  constructor(key: Uint8Array) {
    this.#key = key;
  }

  /**
   * Makes the cipher for the next frame now, so that the frame does not wait
   * for it: creating one costs more than sealing or opening a small frame.
   * The frame's nonce, and every byte of it, stay the same.
   */
  prepare(dir: 'seal' | 'open'): void {
    if (this.#ahead?.dir === dir) return;
    const nonce = frameNonce(this.#counter);
    this.#ahead = dir === 'seal' ? { dir, c: createCipheriv('aes-256-gcm', this.#key, nonce) } : { dir, c: createDecipheriv('aes-256-gcm', this.#key, nonce) };
  }

  seal(plaintext: Uint8Array): Buffer {
    const ahead = this.#takeAhead();
    const c = ahead?.dir === 'seal' ? ahead.c : createCipheriv('aes-256-gcm', this.#key, frameNonce(this.#counter));
    this.#counter++;
    return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  open(frame: Uint8Array): Buffer {
    if (frame.byteLength < TAG) throw new PeerRefusal(Close.frameInvalid, 'frame shorter than its tag');
    // Taken whether or not the frame authenticates: a decipher is used once.
    const ahead = this.#takeAhead();
    const d = ahead?.dir === 'open' ? ahead.c : createDecipheriv('aes-256-gcm', this.#key, frameNonce(this.#counter));
    d.setAuthTag(frame.subarray(frame.byteLength - TAG));
    try {
      const out = Buffer.concat([d.update(frame.subarray(0, frame.byteLength - TAG)), d.final()]);
      this.#counter++;
      return out;
    } catch {
      throw new PeerRefusal(Close.frameInvalid, 'frame failed authentication (tampered, replayed or reordered)');
    }
  }

  #takeAhead(): Ahead | undefined {
    const ahead = this.#ahead;
    this.#ahead = undefined;
    return ahead;
  }
}
