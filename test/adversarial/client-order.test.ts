/**
 * Yjs writes an update's clients from the highest id to the lowest, and its
 * merge relies on it: given clients the other way round, `Y.mergeUpdates`
 * leaves some of their structs out. Updates written by other encoders (and
 * Tessera's own concatenation of several apps' keystrokes) need not be in
 * that order, so nothing of them may be lost when the node merges updates:
 * writes batched into one envelope, and a snapshot with parked content.
 * Real daemon on 127.0.0.1, port 0, with its own LevelDB folder.
 */
import * as encoding from 'lib0/encoding';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import type { DocName } from '../../src/types.js';
import { mergeBounded } from '../../src/sync/new-part.js';
import { testNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';

/** One update setting map `m`'s key `k<client>` for each client, in the order given, deleting (client, clock) pairs. */
function keysUpdate(clients: readonly number[], deletes: readonly [number, number][] = []): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, clients.length);
  for (const client of clients) {
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, 0);
    encoding.writeUint8(e, 8 | 0x20); // JSON-like content, with a parentSub (map key)
    encoding.writeVarUint(e, 1); // parent by root name
    encoding.writeVarString(e, 'm');
    encoding.writeVarString(e, `k${client}`);
    encoding.writeVarUint(e, 1);
    encoding.writeAny(e, `v${client}`);
  }
  encoding.writeVarUint(e, deletes.length);
  for (const [client, clock] of deletes) {
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, 1);
    encoding.writeVarUint(e, clock);
    encoding.writeVarUint(e, 1);
  }
  return encoding.toUint8Array(e);
}

const keysOf = (update: Uint8Array) => {
  const d = new Y.Doc();
  Y.applyUpdate(d, update);
  return [...d.getMap('m').keys()].sort();
};

describe('clients in any order', () => {
  it('merging keeps every struct of updates whose clients come lowest first', () => {
    const merged = mergeBounded([keysUpdate([3, 5]), keysUpdate([9])]);
    expect(keysOf(merged)).toEqual(['k3', 'k5', 'k9']);
  });

  it('writes batched together keep every acknowledged key', async () => {
    const node = await testNode('n');
    const doc = 'order/x' as DocName;
    const base = appDoc(100);
    expect((await postUpdate(node, doc, base.edit((d) => d.getMap('m').set('old', 1)))).status).toBe(200);
    const oldId = 100;
    // Handed over in one turn, they go into one envelope: the first has a deletion, so they are merged, not concatenated.
    const writes = [node.daemon.docs.write(doc, keysUpdate([3, 5], [[oldId, 0]])), node.daemon.docs.write(doc, keysUpdate([9]))];
    for (const w of await Promise.all(writes)) expect(w.refused).toEqual([]);
    expect((await getDoc(node, doc)).body).toEqual({ m: { k3: 'v3', k5: 'v5', k9: 'v9' } });
  });
});
