/**
 * Contract (DESIGN.md §7): the change stream (`GET /v1/docs/{name}/events`,
 * Server-Sent Events) and the lifetime of streams. An SSE client on node B
 * sees `event: change` with `{doc, vector}` for a change made on node A;
 * nothing is sent on connect; an SSE stream ends, and a WebSocket is closed
 * with 4401, when its token expires.
 */
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import WebSocket from 'ws';
import { decodeJwt } from 'jose';
import { linkPair, testNode, type TestNode } from '../helpers/cluster.js';
import { appDoc, getDoc, postUpdate } from '../helpers/docs.js';
import { syncMessage } from '../helpers/api.js';
import { waitUntil } from '../helpers/wait.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { readKeyFile } from '../../src/identity/file.js';

/** A token of `node` that expires in about `ttlMs` (exp has one-second granularity). */
async function shortToken(node: TestNode, scopes: string[], ttlMs: number): Promise<{ token: string; expiresAt: number }> {
  const identity = await readKeyFile(join(node.dir, 'identity.json'));
  const token = await issueApiToken(identity, { scopes, ttlMs });
  return { token, expiresAt: decodeJwt(token).exp! * 1000 };
}

/** An SSE stream read block by block (a block ends with a blank line). */
class Sse {
  readonly blocks: string[] = [];
  readonly res: Response;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = '';

  constructor(res: Response) {
    this.res = res;
    this.#reader = res.body!.getReader();
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<Sse> {
    const abort = new AbortController();
    onTestFinished(() => abort.abort());
    return new Sse(await fetch(url, { headers, signal: abort.signal }));
  }

  /** The next block, or undefined when the server ended the stream. */
  async next(): Promise<string | undefined> {
    for (;;) {
      const end = this.#buffer.indexOf('\n\n');
      if (end >= 0) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        this.blocks.push(block);
        return block;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer += this.#decoder.decode(value, { stream: true });
    }
  }

  /** The next block that is an event (not a comment): its event name and data. */
  async nextEvent(): Promise<{ event: string; data: string } | undefined> {
    for (;;) {
      const block = await this.next();
      if (block === undefined) return undefined;
      const lines = block.split('\n').filter((l) => !l.startsWith(':'));
      if (lines.length === 0) continue;
      const field = (name: string) => lines.filter((l) => l.startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).replace(/^ /, ''));
      return { event: field('event')[0] ?? 'message', data: field('data').join('\n') };
    }
  }

  /** Reads to the end of the body (never a timer racing it). */
  async end(): Promise<void> {
    while ((await this.next()) !== undefined);
  }
}

async function vectorOn(node: TestNode, doc: string): Promise<Record<string, number> | undefined> {
  const res = await fetch(`${node.api}/v1/docs`, { headers: { authorization: `Bearer ${await node.token()}` } });
  return ((await res.json()) as { docs: { name: string; vector: Record<string, number> }[] }).docs.find((d) => d.name === doc)?.vector;
}

describe('GET /v1/docs/{name}/events (DESIGN.md §7)', () => {
  it('an SSE client on B receives event: change with {doc, vector} for a change made on A; nothing is sent on connect', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const app = appDoc();
    expect((await postUpdate(a, 'notes/sse', app.edit((d) => d.getText('t').insert(0, 'one')))).status).toBe(200);
    await waitUntil(async () => (await getDoc(b, 'notes/sse')).body.t === 'one', { what: 'the first change on B' });
    const before = (await vectorOn(b, 'notes/sse'))!;

    const sse = await Sse.open(`${b.api}/v1/docs/notes%2Fsse/events`, { authorization: `Bearer ${await b.token(['read:notes/**'])}` });
    expect(sse.res.status).toBe(200);
    expect(sse.res.headers.get('content-type')).toMatch(/^text\/event-stream/);

    expect((await postUpdate(a, 'notes/sse', app.edit((d) => d.getText('t').insert(3, ' two')))).status).toBe(200);
    const event = await sse.nextEvent();
    // The first event is the change made after connecting: nothing (no event, no state) was sent on connect.
    expect(sse.blocks.slice(0, -1).every((b) => b.split('\n').every((l) => l.startsWith(':')))).toBe(true);
    expect(event?.event).toBe('change');
    const data = JSON.parse(event!.data) as { doc: string; vector: Record<string, number> };
    expect(Object.keys(data).sort()).toEqual(['doc', 'vector']);
    expect(data.doc).toBe('notes/sse');
    const feed = Object.keys(before).find((k) => k.startsWith(`${a.id}:`))!;
    expect(data.vector).toEqual({ ...before, [feed]: before[feed]! + 1 });
    expect(await vectorOn(b, 'notes/sse')).toEqual(data.vector);
  });

  it('one event per change, local or replicated, only for its own document; ?token= works (EventSource cannot set headers)', async () => {
    const a = await testNode('a');
    const b = await testNode('b');
    await linkPair(a, b);
    const sse = await Sse.open(`${b.api}/v1/docs/notes%2Fmine/events?token=${await b.token(['read:notes/**'])}`);
    expect(sse.res.status).toBe(200);
    // Another document changes first: not this stream's business.
    expect((await postUpdate(b, 'notes/other', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    // A local change on B, then a replicated one from A.
    const local = await postUpdate(b, 'notes/mine', appDoc().edit((d) => d.getMap('m').set('b', 1)));
    expect(local.status).toBe(200);
    const first = await sse.nextEvent();
    expect(first?.event).toBe('change');
    expect(JSON.parse(first!.data)).toEqual({ doc: 'notes/mine', vector: local.body.vector });
    expect((await postUpdate(a, 'notes/mine', appDoc().edit((d) => d.getMap('m').set('a', 1)))).status).toBe(200);
    const second = await sse.nextEvent();
    expect(second?.event).toBe('change');
    const replicated = JSON.parse(second!.data) as { doc: string; vector: Record<string, number> };
    expect(replicated.doc).toBe('notes/mine');
    expect(Object.keys(replicated.vector).some((k) => k.startsWith(`${a.id}:`))).toBe(true);
  });

  it('the stream ends when its token expires', async () => {
    const node = await testNode('expiry');
    const { token, expiresAt } = await shortToken(node, ['read:notes/**'], 1500);
    const sse = await Sse.open(`${node.api}/v1/docs/notes%2Fexp/events`, { authorization: `Bearer ${token}` });
    expect(sse.res.status).toBe(200);
    // Changes before expiry are delivered.
    expect((await postUpdate(node, 'notes/exp', appDoc().edit((d) => d.getText('t').insert(0, 'x')))).status).toBe(200);
    expect((await sse.nextEvent())?.event).toBe('change');
    await sse.end();
    expect(Date.now()).toBeGreaterThanOrEqual(expiresAt - 50);
    // The expired token cannot open a live stream again: refused (401), or (within clockTolerance) ended at once.
    const again = await Sse.open(`${node.api}/v1/docs/notes%2Fexp/events`, { authorization: `Bearer ${token}` });
    if (again.res.status === 200) await again.end();
    else expect(again.res.status).toBe(401);
  });
});

describe('WebSocket token expiry (DESIGN.md §7)', () => {
  it('an open WebSocket is closed with 4401 when its token expires', async () => {
    const node = await testNode('expiry');
    const { token, expiresAt } = await shortToken(node, ['read:notes/**', 'write:notes/**'], 1500);
    const ws = new WebSocket(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs/notes/exp?token=${token}`);
    onTestFinished(() => ws.terminate());
    const closed = new Promise<{ code: number; at: number }>((resolve) => ws.on('close', (code) => resolve({ code, at: Date.now() })));
    // It was open: the server's sync step 1 arrived.
    const first = await new Promise<Buffer>((resolve, reject) => {
      ws.once('message', (d: Buffer) => resolve(d));
      ws.once('error', reject);
    });
    expect([first[0], first[1]]).toEqual([0, 0]);
    const { code, at } = await closed;
    expect(code).toBe(4401);
    expect(at).toBeGreaterThanOrEqual(expiresAt - 50);
  });

  it('with the token in the Authorization header too', async () => {
    const node = await testNode('expiry');
    const { token } = await shortToken(node, ['read:**'], 1500);
    const ws = new WebSocket(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs/notes/exp`, { headers: { authorization: `Bearer ${token}` } });
    onTestFinished(() => ws.terminate());
    const code = await new Promise<number>((resolve) => ws.on('close', (c) => resolve(c)));
    expect(code).toBe(4401);
  });
});

describe('long-lived tokens (apiTokenMaxTtl defaults to 30d, beyond a single Node timer)', () => {
  const DAYS_29 = 29 * 86_400_000;

  it('an SSE stream opened with a 29-day token stays open and delivers changes', async () => {
    const node = await testNode('long');
    const { token } = await shortToken(node, ['read:**', 'write:**'], DAYS_29);
    const sse = await Sse.open(`${node.api}/v1/docs/notes%2Flong/events`, { authorization: `Bearer ${token}` });
    expect(sse.res.status).toBe(200);
    expect((await postUpdate(node, 'notes/long', appDoc().edit((d) => d.getText('t').insert(0, 'x')), token)).status).toBe(200);
    const event = await sse.nextEvent();
    expect(event?.event).toBe('change');
  });

  it('a WebSocket opened with a 29-day token is not closed with 4401', async () => {
    const node = await testNode('long');
    const { token } = await shortToken(node, ['read:**', 'write:**'], DAYS_29);
    const ws = new WebSocket(`ws://127.0.0.1:${node.daemon.apiAddress.port}/v1/yjs/notes/long?token=${token}`);
    onTestFinished(() => ws.terminate());
    const events: string[] = [];
    ws.on('close', (code) => events.push(`close ${code}`));
    await new Promise<void>((resolve, reject) => {
      ws.once('message', () => resolve());
      ws.once('error', reject);
    });
    // A write through the socket, confirmed by the API: the socket lived through it.
    const app = appDoc();
    const update = app.edit((d) => d.getText('t').insert(0, 'through the socket'));
    ws.send(syncMessage(2, update));
    await waitUntil(async () => events.length > 0 || (await getDoc(node, 'notes/long')).body.t === 'through the socket', { what: 'the write or a close' });
    expect(events).toEqual([]);
    expect(ws.readyState).toBe(WebSocket.OPEN);
  });
});
