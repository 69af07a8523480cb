import * as Y from 'yjs';
import type { Logger } from 'pino';
import { Space } from '../store/store.js';
import type { LiveDoc } from './live-doc.js';
import { firstMissingDeleted, pendingRanges } from './new-part.js';
import type { DocsOptions } from './docs-context.js';

/**
 * Keeps a document's pending structs and pending deletions (DESIGN.md §2,
 * §9) each within maxPendingBytes: beyond it they are parked in the store,
 * keyed by what they wait for; parked ones come back as soon as any of that
 * is held. (Yjs retries its pending deletions at every update, so unbounded
 * they would cost time as well as memory.)
 */
export class Parking {
  readonly #o: Pick<DocsOptions, 'store' | 'maxPendingBytes'>;
  readonly #log: Logger;
  #parkSeq = 0;

  constructor(opts: Pick<DocsOptions, 'store' | 'maxPendingBytes'>, log: Logger) {
    this.#o = opts;
    this.#log = log;
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
      if (bytes) Y.applyUpdateV2(live.ydoc, bytes);
      // Not silent: those structs are missing from memory until the document is loaded again (its envelopes hold them).
      else this.#log.error({ doc: live.name, key: p.key }, 'parked structs are missing from the store; the document lacks them until it is loaded again');
      await this.#o.store.write([{ type: 'del', space: Space.parked, key: p.key }]);
      // What came back may be what others wait for.
      i = 0;
    }
    const limit = this.#o.maxPendingBytes ?? 1024 * 1024;
    const pending = store.pendingStructs;
    if (pending && pending.update.byteLength > limit) {
      await this.#park(live, 'structs', pending.update, [...pending.missing], pendingRanges(live.ydoc));
      store.pendingStructs = null;
    }
    const deletions = store.pendingDs;
    if (deletions && deletions.byteLength > limit) {
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
