import { createHash } from 'node:crypto';
import * as Y from 'yjs';
import { StoreError } from '../errors.js';
import { Space, type Store } from '../store/store.js';
import type { LiveDoc } from './live-doc.js';
import { mergeBounded } from './new-part.js';
import { encodeSnapshot } from './doc-records.js';
import { joinAdjacent } from '../yjs/join.js';

// A loaded document's state as a whole: the snapshot it leaves in the store, and the digest peers compare.

/** Writes the document's snapshot (its state and the vector it covers), unless nothing changed since the last one. */
export async function writeSnapshot(store: Store, live: LiveDoc): Promise<void> {
  if (live.sinceSnapshot === 0) return;
  let state = Y.encodeStateAsUpdate(live.ydoc);
  // Parked structs belong to the document too: a snapshot that left them out would lose them at the next load.
  if (live.parked.length) {
    const parked: Uint8Array[] = [];
    for (const p of live.parked) {
      const bytes = await store.get(Space.parked, p.key);
      // Without them the snapshot would cover their envelopes and lose their structs: better none.
      if (!bytes) throw new StoreError(`parked structs of ${live.name} are missing from the store: no snapshot written`);
      parked.push(Y.convertUpdateFormatV2ToV1(bytes));
    }
    state = mergeBounded([state, ...parked]);
  }
  await store.write([{ type: 'put', space: Space.snapshot, key: live.name, value: encodeSnapshot(live.vector, state) }]);
  live.sinceSnapshot = 0;
}

/**
 * SHA-256 of the document's encoded state (cached until it changes), its
 * adjacent structs joined as loading it whole would. The digest covers what
 * the document holds applied, not what waits in its pending sets: nodes with
 * the same envelopes agree on it whether or not they have parked their
 * pending structs, or restarted from a snapshot.
 */
export function digestOf(live: LiveDoc): string {
  if (live.digest) return live.digest;
  const store = live.ydoc.store;
  const { pendingStructs, pendingDs } = store;
  store.pendingStructs = null;
  store.pendingDs = null;
  try {
    // The same bytes for the same state, however it was applied.
    joinAdjacent(live.ydoc);
    live.digest = createHash('sha256').update(Y.encodeStateAsUpdate(live.ydoc)).digest('hex');
  } finally {
    store.pendingStructs = pendingStructs;
    store.pendingDs = pendingDs;
  }
  return live.digest;
}
