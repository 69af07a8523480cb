/**
 * A peer's want handled while an envelope is being applied: a relay forwards
 * an envelope only once the vector that counts it is published, so a want
 * read in between (Replicator reads vectors without the document lock) either
 * sees it or is followed by the forward. Had the forward come first, a peer
 * that refused the feed until just now (notWanted, withdrawn by its want)
 * would miss that envelope until the next periodic announce.
 *
 * The window spans real I/O when the apply needs the store: here B has
 * maxPendingBytes: 1, so A's second envelope (pending: it builds on structs
 * nobody has) is parked with a fsynced write before its vector is published.
 * C's want is held on B's session for C (network delay) and delivered while
 * B waits for that write.
 */
import { describe, expect, it } from 'vitest';
import * as Y from 'yjs';
import { entryFor, setPeers, testNode, peerState } from '../helpers/cluster.js';
import { postUpdate } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';
import type { DocName, NodeId } from '../../src/types.js';
import type { SessionMessage } from '../../src/protocol/messages.js';

describe('replication races', () => {
  it('a want handled between forward and publish does not lose the forwarded envelope', async () => {
    const a = await testNode('a');
    const b = await testNode('b', { maxPendingBytes: 1 });
    const c = await testNode('c');
    // A–B–C; C does not know A yet, so it refuses A's envelopes (notWanted).
    await setPeers(c, [entryFor(b, { dial: false })]);
    await setPeers(b, [entryFor(a, { dial: false }), entryFor(c, { dial: false })]);
    await setPeers(a, [entryFor(b)]);
    await setPeers(c, [entryFor(b)]);
    await waitUntil(async () => (await peerState(b, a)) === 'connected' && (await peerState(b, c)) === 'connected', { what: 'A–B–C connected' });

    // B's session for C: notes C's notWanted, and holds C's wants while told to (network delay).
    const toC = b.daemon.peerManager.session(c.id as NodeId)!;
    const held: unknown[][] = [];
    let holding = false;
    let refused = false;
    const emit = toC.emit.bind(toC) as (event: string, ...args: unknown[]) => boolean;
    toC.emit = ((event: string, ...args: unknown[]) => {
      const type = event === 'message' ? (args[0] as SessionMessage).type : undefined;
      if (type === 'notWanted') refused = true;
      if (holding && type === 'want') {
        held.push(args);
        return true;
      }
      return emit(event, ...args);
    }) as typeof toC.emit;
    const release = () => {
      if (!holding) return;
      holding = false;
      for (const args of held) emit('message', ...args);
    };

    const doc = 'review/race' as DocName;
    const app = new Y.Doc();
    const updates: Uint8Array[] = [];
    app.on('update', (u: Uint8Array) => updates.push(u));
    app.getText('t').insert(0, 'x'); // updates[0]: sent
    app.getText('t').insert(1, 'y'); // updates[1]: never sent
    app.getText('t').insert(2, 'z'); // updates[2]: depends on updates[1]: pending everywhere
    expect((await postUpdate(a, doc, updates[0]!)).status).toBe(200);
    const feedA = a.daemon.docs.ownFeed;
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[feedA] === 1, { what: 'A:1 on B' });
    await waitUntil(() => refused, { what: "C's notWanted for A's feed, on B" });
    holding = true;

    // C now trusts A: it wants D again (held at B for now).
    await setPeers(c, [entryFor(b), entryFor(a, { dial: false })]);
    await waitUntil(() => held.length > 0, { what: "C's want, held at B" });

    // A:2 reaches B; the held want is delivered while B is still applying it (parking its pending structs).
    b.daemon.docs.on('envelope', (env) => {
      if (env.doc === doc && env.seq === 2) setImmediate(release);
    });
    expect((await postUpdate(a, doc, updates[2]!)).status).toBe(200);
    await waitUntil(async () => (await b.daemon.docs.vector(doc))[feedA] === 2, { what: 'A:2 on B' });
    release();

    await waitUntil(async () => (await c.daemon.docs.vector(doc))[feedA] === 2, { what: 'A:2 on C', timeoutMs: 8_000 });
  });
});
