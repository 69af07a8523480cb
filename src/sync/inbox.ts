import type { Session } from '../net/session.js';
import type { SessionMessage } from '../protocol/messages.js';

/** Bytes of received messages waiting to be handled beyond which reading from the peer pauses (until half of them are handled). */
const INBOUND_PAUSE = 1024 * 1024;
/** Envelopes taken into one pass when envelopes messages wait back to back. */
const MERGE_INBOUND_ITEMS = 4096;

/**
 * What one session receives, handled one message at a time, in order, once
 * `ready` settles (the peer's first grants are taken in). Envelopes messages
 * waiting back to back are handled as one (one check pass, one group
 * commit), and reading from the socket pauses while too many bytes wait.
 */
export class Inbox {
  readonly #session: Session;
  readonly #ready: Promise<void>;
  readonly #handle: (m: SessionMessage) => Promise<void>;
  readonly #queue: { m: SessionMessage; bytes: number }[] = [];
  #bytes = 0;
  #backlogged = false;
  #handling = false;
  #stopped = false;

  constructor(session: Session, ready: Promise<void>, handle: (m: SessionMessage) => Promise<void>) {
    this.#session = session;
    this.#ready = ready;
    this.#handle = handle;
  }

  push(m: SessionMessage, bytes: number): void {
    this.#bytes += bytes;
    if (this.#bytes > INBOUND_PAUSE && !this.#backlogged) {
      this.#backlogged = true;
      this.#session.pause('backlog');
    }
    this.#queue.push({ m, bytes });
    if (!this.#handling) void this.#drain();
  }

  stop(): void {
    this.#stopped = true;
  }

  async #drain(): Promise<void> {
    this.#handling = true;
    await this.#ready;
    while (this.#queue.length && !this.#stopped) {
      let { m, bytes } = this.#queue.shift()!;
      if (m.type === 'envelopes') {
        const items = [...m.items];
        while (this.#queue[0]?.m.type === 'envelopes' && items.length < MERGE_INBOUND_ITEMS) {
          const next = this.#queue.shift()!;
          items.push(...(next.m as typeof m).items);
          bytes += next.bytes;
        }
        m = { type: 'envelopes', items };
      }
      await this.#handle(m);
      this.#bytes -= bytes;
      if (this.#backlogged && this.#bytes <= INBOUND_PAUSE / 2) {
        this.#backlogged = false;
        this.#session.resume('backlog');
      }
    }
    this.#handling = false;
  }
}
