/**
 * A target node with a listed raw peer (mallory) that speaks the peer
 * protocol by hand, and a sync point: for attack tests.
 */
import * as Y from 'yjs';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import type { DocName } from '../../src/types.js';
import { setPeers, type TestNode } from './cluster.js';
import { RawSyncPeer, envelope, newFeed, rawEntry, yUpdate } from './raw-peer.js';
import { waitUntil } from './wait.js';

export interface Mallory {
  readonly pair: KeyPair;
  readonly peer: RawSyncPeer;
  /** Sends mallory's own envelopes on a marker doc, one after the other, until the target applied them: everything sent before was handled. */
  settle(): Promise<void>;
}

/**
 * Lists a fresh raw peer on `target` (with `perms`; it always may write
 * `marker/**`, for the sync point) next to `entries`, and dials it.
 */
export async function mallory(target: TestNode, entries: Record<string, unknown>[], authorities: unknown[] = [], perms: { read?: string[]; write?: string[] } = { read: [], write: [] }): Promise<Mallory> {
  const pair = await generateKeyPair();
  await setPeers(target, [...entries, rawEntry('mallory', pair, { read: perms.read ?? [], write: [...(perms.write ?? []), 'marker/**'] })], authorities);
  const peer = await RawSyncPeer.dial(target.url, pair, target);
  const feed = newFeed();
  let seq = 0;
  return {
    pair,
    peer,
    async settle() {
      // Two markers, one after the other: the node takes up the documents of one message side by side, so the
      // first may be in before the rest of its message; the second is handled only once that whole message is.
      for (let round = 0; round < 2; round++) {
        const s = ++seq;
        peer.offer(envelope(pair, { doc: 'marker/doc', feed, seq: s, update: yUpdate(900_000 + s, (d) => d.getMap('m').set(`k${s}`, s)) }));
        await waitUntil(async () => (await target.daemon.docs.vector('marker/doc' as DocName))[`${pair.id}:${feed}`] === s, { what: `marker ${s} applied`, timeoutMs: 60_000 });
      }
    },
  };
}

/** A V1 update carrying one string of `chars` characters under a fixed client id. */
export function bigText(clientID: number, chars: number): Uint8Array {
  const d = new Y.Doc({ gc: true });
  d.clientID = clientID;
  d.getText('t').insert(0, 'x'.repeat(chars));
  return Y.encodeStateAsUpdate(d);
}
