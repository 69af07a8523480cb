/**
 * The typed client (`tessera/client`, src/client/index.ts) end to end against
 * real nodes: write, get, list, state, authors, verify, status and subscribe,
 * and its errors carrying the HTTP status and the body's code.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import * as Y from 'yjs';
import { TesseraApiError, TesseraClient } from '../../src/client/index.js';
import { linkPair, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc } from '../helpers/docs.js';
import { waitUntil } from '../helpers/wait.js';

async function client(node: TestNode, scopes?: string[], url = node.api): Promise<TesseraClient> {
  return new TesseraClient({ url, token: await node.token(scopes) });
}

/** Subscribes and waits until the node is really listening, so no change is missed. */
async function subscribed(node: TestNode, c: TesseraClient, doc: string) {
  const changes: { doc: string; vector: Record<string, number> }[] = [];
  const errors: unknown[] = [];
  const before = node.daemon.docs.listenerCount('change');
  const stop = c.subscribe(doc, (ch) => changes.push(ch), (err) => errors.push(err));
  onTestFinished(stop);
  await waitUntil(() => node.daemon.docs.listenerCount('change') > before || errors.length > 0, { what: 'the change stream is open' });
  return { changes, errors, stop, before };
}

describe('TesseraClient', () => {
  it('verify through a node that is being written meanwhile reports no problem (it reads a snapshot)', async () => {
    const node = await testNode('busy');
    const c = await client(node);
    const apps = Array.from({ length: 20 }, () => appDoc());
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await c.write(`w/${i % 20}`, apps[i % 20]!.edit((d) => d.getText('t').insert(0, 'x')));
    })();
    const reports = [];
    for (let i = 0; i < 30; i++) reports.push(await c.verify());
    writing = false;
    await writer;
    expect(reports.filter((r) => !r.ok)).toEqual([]);
    expect(reports.at(-1)!.envelopes).toBeGreaterThan(reports[0]!.envelopes);
  });


  it('write, get, list, state, authors, verify and status', async () => {
    const node = await testNode('client');
    const c = await client(node, undefined, `${node.api}/`);
    const app = appDoc();
    const v1 = await c.write('notes/a', app.edit((d) => d.getText('t').insert(0, 'hello')));
    expect(Object.values(v1)).toEqual([1]);
    expect(Object.keys(v1)[0]!.startsWith(`${node.id}:`)).toBe(true);
    const sv1 = Y.encodeStateVector(app.doc);
    const atSv1 = Y.encodeStateAsUpdate(app.doc);
    const v2 = await c.write('notes/a', app.edit((d) => d.getMap('m').set('k', [1, 2])));
    expect(Object.values(v2)).toEqual([2]);
    // The same update again: same vector, nothing signed.
    expect(await c.write('notes/a', Y.encodeStateAsUpdate(app.doc))).toEqual(v2);

    expect(await c.get('notes/a')).toEqual({ t: 'hello', m: { k: [1, 2] } });
    expect(await c.list()).toEqual([{ name: 'notes/a', vector: v2 }]);

    const full = await c.state('notes/a');
    const copy = new Y.Doc();
    Y.applyUpdate(copy, full);
    expect(copy.getText('t').toString()).toBe('hello');
    // With a state vector: only what it lacks, and it completes a doc at that state.
    const diff = await c.state('notes/a', sv1);
    expect(diff.byteLength).toBeLessThan(full.byteLength);
    expect([...Y.parseUpdateMeta(diff).from.values()].every((clock) => clock >= 5)).toBe(true);
    const behind = new Y.Doc();
    Y.applyUpdate(behind, atSv1);
    expect(behind.getMap('m').toJSON()).toEqual({});
    Y.applyUpdate(behind, diff);
    expect(behind.getMap('m').toJSON()).toEqual({ k: [1, 2] });
    expect(Y.encodeStateVector(behind)).toEqual(Y.encodeStateVector(copy));

    expect(await c.authors('notes/a')).toEqual([{ origin: node.id, name: 'client', envelopes: 2, clients: [[app.doc.clientID, 0, expect.any(Number)]] }]);
    expect(await c.verify()).toEqual({ ok: true, docs: 1, envelopes: 2, problems: [] });
    const s = await c.status();
    expect(s).toMatchObject({ id: node.id, name: 'client', peers: [], docs: 1, pending: 0, grant: null, alarms: [] });
  });

  it('errors are TesseraApiError with the status and the code of the error body', async () => {
    const node = await testNode('client');
    const c = await client(node);
    const err = (p: Promise<unknown>) => p.then(() => undefined, (e: unknown) => e);
    const missing = await err(c.get('notes/never'));
    expect(missing).toBeInstanceOf(TesseraApiError);
    expect(missing).toMatchObject({ status: 404, code: 'not_found' });
    expect(await err(c.get('a//b'))).toMatchObject({ status: 400, code: 'bad_name' });
    expect(await err(c.write('notes/x', new Uint8Array([1, 2, 3])))).toMatchObject({ status: 400, code: 'bad_update' });
    const reader = await client(node, ['read:**']);
    expect(await err(reader.write('notes/x', appDoc().edit((d) => d.getText('t').insert(0, 'x'))))).toMatchObject({ status: 403, code: 'forbidden' });
    expect(await err(new TesseraClient({ url: node.api, token: 'nope' }).list())).toMatchObject({ status: 401, code: 'unauthorized' });
    const narrow = await client(node, ['read:notes/**']);
    expect(await err(narrow.verify())).toMatchObject({ status: 403, code: 'forbidden' });
  });

  it('subscribe: one call per change with {doc, vector}, until unsubscribed', async () => {
    const node = await testNode('client');
    const c = await client(node);
    const sub = await subscribed(node, c, 'notes/live');
    const v1 = await c.write('notes/live', appDoc().edit((d) => d.getText('t').insert(0, 'one')));
    await waitUntil(() => sub.changes.length >= 1, { what: 'the first change' });
    expect(sub.changes).toEqual([{ doc: 'notes/live', vector: v1 }]);
    const v2 = await c.write('notes/live', appDoc().edit((d) => d.getText('u').insert(0, 'two')));
    await waitUntil(() => sub.changes.length >= 2, { what: 'the second change' });
    expect(sub.changes).toEqual([{ doc: 'notes/live', vector: v1 }, { doc: 'notes/live', vector: v2 }]);
    expect(sub.errors).toEqual([]);
    // Unsubscribing closes the stream: the node stops listening for it.
    sub.stop();
    await waitUntil(() => node.daemon.docs.listenerCount('change') === sub.before, { what: 'the server side of the stream closed' });
    await c.write('notes/live', appDoc().edit((d) => d.getText('v').insert(0, 'three')));
    expect(sub.changes).toHaveLength(2);
  });

  it('subscribe on node B sees a change written through the client on node A', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const onB = await client(b, ['read:notes/**']);
    const sub = await subscribed(b, onB, 'notes/x');
    const vector = await (await client(a)).write('notes/x', appDoc().edit((d) => d.getText('t').insert(0, 'from a')));
    await waitUntil(() => sub.changes.length >= 1, { what: 'the replicated change on B' });
    expect(sub.changes[0]).toEqual({ doc: 'notes/x', vector });
    expect(await onB.get('notes/x')).toEqual({ t: 'from a' });
  });

  it('subscribe without a read scope reports a 403 through onError', async () => {
    const node = await testNode('client');
    const c = await client(node, ['write:**']);
    const sub = await subscribed(node, c, 'notes/x');
    await waitUntil(() => sub.errors.length > 0, { what: 'the error' });
    expect(sub.errors[0]).toBeInstanceOf(TesseraApiError);
    expect(sub.errors[0]).toMatchObject({ status: 403, code: 'forbidden' });
  });
});
