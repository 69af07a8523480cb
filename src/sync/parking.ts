import * as Y from 'yjs';
import type { Logger } from 'pino';
import { Space } from '../store/store.js';
import type { LiveDoc } from './live-doc.js';
import { waitForWhatIsNeeded } from '../yjs/pending.js';
import { firstMissingDeleted, pendingRanges } from './new-part.js';
import type { DocsOptions } from './docs-context.js';

/**
 * Pending deletions held in memory at most: Yjs reads them all again at
 * every update it applies (about 0.2 µs a range), so at 1 MiB every later
 * keystroke of anyone cost over 100 ms.
 */
const PENDING_DELETIONS_BYTES = 16 * 1024;

/**
 * Keeps a document's pending structs within maxPendingBytes, and its pending
 * deletions (DESIGN.md §2, §9) within that or PENDING_DELETIONS_BYTES,
 * whichever is less: beyond, they are parked in the store, keyed by what
 * they wait for; parked ones come back as soon as any of that is held.
 */
export class Parking {
  readonly #o: Pick<DocsOptions, 'store' | 'maxPendingBytes'>;
  readonly #log: Logger;
  #parkSeq = 0;

  constructor(opts: Pick<DocsOptions, 'store' | 'maxPendingBytes'>, log: Logger) {
    this.#o = opts;
    this.#log = log;
  }

  get #structsLimit(): number {
    return this.#o.maxPendingBytes ?? 1024 * 1024;
  }

  /** Yjs reads its pending deletions again at every update it applies: they are held to much less. */
  get #deletionsLimit(): number {
    return Math.min(this.#structsLimit, PENDING_DELETIONS_BYTES);
  }

  /** Whether what is pending has passed a bound, so that settling now (not after the batch) is due. */
  due(live: LiveDoc): boolean {
    const { pendingStructs, pendingDs } = live.ydoc.store;
    return (pendingDs?.byteLength ?? 0) > this.#deletionsLimit || (pendingStructs?.update.byteLength ?? 0) > this.#structsLimit;
  }

  /** Brings back the parked structs whose wait is over, then parks what is pending beyond the bound. */
  async settle(live: LiveDoc): Promise<void> {
    const store = live.ydoc.store;
    for (let i = 0; i < live.parked.length; ) {
      const p = live.parked[i]!;
      if (!p.missing.some(([client, clock]) => clock < Y.getState(store, client))) {
        i++;
        continue;
      }
      const bytes = await this.#o.store.get(Space.parked, p.key);
      live.parked.splice(i, 1);
      if (bytes) {
        Y.applyUpdateV2(live.ydoc, bytes);
        waitForWhatIsNeeded(live.ydoc);
      }
      // Not silent: those structs are missing from memory until the document is loaded again (its envelopes hold them).
      else this.#log.error({ doc: live.name, key: p.key }, 'parked structs are missing from the store; the document lacks them until it is loaded again');
      await this.#o.store.write([{ type: 'del', space: Space.parked, key: p.key }]);
      // What came back may be what others wait for.
      i = 0;
    }
    const pending = store.pendingStructs;
    if (pending && pending.update.byteLength > this.#structsLimit) {
      await this.#park(live, 'structs', pending.update, [...pending.missing], pendingRanges(live.ydoc));
      store.pendingStructs = null;
    }
    const deletions = store.pendingDs;
    if (deletions && deletions.byteLength > this.#deletionsLimit) {
      const missing = firstMissingDeleted(live.ydoc, deletions);
      if (!missing.length) return;
      await this.#park(live, 'deletions', deletions, missing, []);
      store.pendingDs = null;
    }
  }

  async #park(live: LiveDoc, what: 'structs' | 'deletions', update: Uint8Array, missing: [number, number][], ranges: [number, number, number][]): Promise<void> {
    const [client, clock] = missing[0] ?? [0, 0];
    const key = `pending\u0000${live.name}\u0000${client}:${clock}\u0000${(this.#parkSeq++).toString(36)}`;
    await this.#o.store.write([{ type: 'put', space: Space.parked, key, value: update }]);
    live.parked.push({ key, missing, ranges });
    this.#log.warn({ doc: live.name, bytes: update.byteLength, waitingFor: missing.slice(0, 5) }, `pending ${what} passed maxPendingBytes: parked in the store until what they wait for arrives`);
  }
}
