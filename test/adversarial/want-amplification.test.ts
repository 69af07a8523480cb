/**
 * A `want` asks the sender for the range of each feed the receiver lacks. A
 * reader that repeats a 30-byte `want {"doc":{}}` must not make the node read
 * and send the whole document once per want: a want for a range already
 * queued (or being sent) to that peer merges with it. A want after the pass
 * is done is still answered (a receiver re-asks after a gap, PROTOCOL.md
 * §6.10, R10).
 */
import { describe, expect, it } from 'vitest';
import { testNode } from '../helpers/cluster.js';
import { appDoc, postUpdate } from '../helpers/docs.js';
import { mallory } from '../helpers/mallory.js';
import type { RawSyncPeer } from '../helpers/raw-peer.js';
import { waitUntil } from '../helpers/wait.js';

const DOC = 'big/doc';
const EDITS = 20;

/** Envelopes of `doc` the peer received. */
const received = (peer: RawSyncPeer, doc: string) => peer.envelopes().filter((e) => JSON.parse(Buffer.from(e.token.split('.')[1]!, 'base64url').toString('utf8')).doc === doc).length;

describe('repeated wants', () => {
  it('100 wants in a row for the whole document: it is sent once, not 100 times; a later want still gets it', async () => {
    const target = await testNode('target');
    const app = appDoc();
    for (let i = 0; i < EDITS; i++) expect((await postUpdate(target, DOC, app.edit((d) => d.getMap('m').set(`k${i}`, 'x'.repeat(50_000))))).status).toBe(200);
    expect((await postUpdate(target, 'big/end', appDoc().edit((d) => d.getMap('m').set('k', 1)))).status).toBe(200);
    const m = await mallory(target, [], [], { read: ['big/**'], write: [] });
    // Ranges are sent from one queue in order: once a want for the marker
    // document is answered, every want before it has been. (The marker is
    // never edited meanwhile, so nothing of it is pushed live.)
    let marks = 0;
    const sync = async () => {
      const n = ++marks;
      m.peer.send({ type: 'want', docs: { 'big/end': {} } });
      await waitUntil(() => received(m.peer, 'big/end') >= n, { what: `marker ${n} received` });
    };

    for (let i = 0; i < 100; i++) m.peer.send({ type: 'want', docs: { [DOC]: {} } });
    await sync();
    const once = received(m.peer, DOC);
    expect(once).toBeGreaterThanOrEqual(EDITS);
    // One pass (another only if one was done before the last wants were read): never one per want.
    expect(once).toBeLessThanOrEqual(3 * EDITS);

    m.peer.send({ type: 'want', docs: { [DOC]: {} } });
    await sync();
    expect(received(m.peer, DOC)).toBe(once + EDITS);
  }, 60_000);
});
