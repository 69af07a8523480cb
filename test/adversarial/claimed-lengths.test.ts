/**
 * A GC or deleted run's length is only a number in the update: a few bytes
 * may claim 2^40 clocks. Nothing may walk such a run clock by clock. Sent
 * twice (the second time it overlaps what the first stored, so the
 * equivocation check compares them), it is answered at once, and the node
 * serves on. Real daemon on 127.0.0.1, port 0, with its own LevelDB folder.
 */
import * as encoding from 'lib0/encoding';
import { describe, expect, it } from 'vitest';
import { testNode } from '../helpers/cluster.js';
import { getDoc, postUpdate } from '../helpers/docs.js';

/** A V1 update of one run of `kind` (0: GC, 1: deleted content) of `length` clocks for `client`, from clock 0. */
function claimedRun(kind: 0 | 1, client: number, length: number): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 1); // clients
  encoding.writeVarUint(e, 1); // structs of that client
  encoding.writeVarUint(e, client);
  encoding.writeVarUint(e, 0); // clock
  if (kind === 0) {
    encoding.writeUint8(e, 0); // GC
    encoding.writeVarUint(e, length);
  } else {
    encoding.writeUint8(e, 1); // an item with deleted content, no origins: it names its parent
    encoding.writeVarUint(e, 1); // parent by root name
    encoding.writeVarString(e, 't');
    encoding.writeVarUint(e, length);
  }
  encoding.writeVarUint(e, 0); // delete set: no clients
  return encoding.toUint8Array(e);
}

describe('runs that claim 2^40 clocks', () => {
  it.each([['GC', 0], ['deleted content', 1]] as const)('a %s run sent twice is answered at once, and the node serves on', async (_label, kind) => {
    const node = await testNode('n');
    const run = claimedRun(kind, 50, 2 ** 40);
    expect((await postUpdate(node, 'claims/x', run)).status).toBe(200);
    expect((await postUpdate(node, 'claims/x', run)).status).toBe(200);
    expect((await fetch(`${node.api}/healthz`)).status).toBe(200);
    expect((await getDoc(node, 'claims/x')).status).toBe(200);
    expect((await node.daemon.verify()).ok).toBe(true);
  });
});
