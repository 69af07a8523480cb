import type { FeedKey } from '../types.js';
import type { HeldEnvelope, LiveDoc } from './live-doc.js';
import type { DocsOptions } from './docs-context.js';

const heldSize = (h: HeldEnvelope): number => h.token.length + h.update.byteLength;

/**
 * Envelopes that arrived before an earlier seq of their feed, held in their
 * document until it comes: at most maxHeldPerDoc per document, and
 * maxHeldBytes over every loaded document.
 */
export class HeldEnvelopes {
  readonly #o: Pick<DocsOptions, 'maxHeldPerDoc' | 'maxHeldBytes'>;
  /** Bytes held by every loaded document. */
  #heldBytes = 0;

  constructor(opts: Pick<DocsOptions, 'maxHeldPerDoc' | 'maxHeldBytes'>) {
    this.#o = opts;
  }

  /**
   * Holds `h` under its feed and seq: 'full' if a bound (or the document
   * being unloaded) leaves no room for it, 'conflict' if a different
   * envelope is already held there, 'held' otherwise (also when that very
   * envelope is).
   */
  hold(live: LiveDoc, feed: FeedKey, h: HeldEnvelope): 'held' | 'full' | 'conflict' {
    const size = heldSize(h);
    if (live.retired || live.heldCount >= (this.#o.maxHeldPerDoc ?? 1000) || this.#heldBytes + size > (this.#o.maxHeldBytes ?? 64 * 1024 * 1024)) return 'full';
    const m = live.held.get(feed) ?? live.held.set(feed, new Map()).get(feed)!;
    const earlier = m.get(h.claims.seq);
    if (earlier) {
      // The first one held stays; a different second one is a conflict, as for stored envelopes.
      return earlier.token !== h.token ? 'conflict' : 'held';
    }
    live.heldCount++;
    live.heldBytes += size;
    this.#heldBytes += size;
    m.set(h.claims.seq, h);
    return 'held';
  }

  /** Takes the envelope held for `seq` of `feed`, if there is one. */
  take(live: LiveDoc, feed: FeedKey, seq: number): HeldEnvelope | undefined {
    const m = live.held.get(feed);
    const h = m?.get(seq);
    if (!h) return undefined;
    m!.delete(seq);
    const size = heldSize(h);
    live.heldCount--;
    live.heldBytes -= size;
    this.#heldBytes -= size;
    return h;
  }

  /** Lets go of everything a document holds (it is leaving memory). */
  drop(live: LiveDoc): void {
    this.#heldBytes -= live.heldBytes;
    live.held.clear();
    live.heldCount = 0;
    live.heldBytes = 0;
  }
}
