/**
 * What a writer's envelope or an app's update may carry: token parts in
 * canonical base64url only (the node:crypto path refuses what a JOSE
 * verifier refuses, DESIGN.md §1), content nested at most MAX_NESTING
 * deep (Yjs reads and renders content recursively: deeper would be stored
 * and then break every read of the document), and nothing that Yjs then
 * refuses to apply (a sub-document without options) or that no JSON read of
 * the document could show (a BigInt).
 */
import { sign } from 'node:crypto';
import * as encoding from 'lib0/encoding';
import { jwtVerify } from 'jose';
import * as Y from 'yjs';
import { describe, expect, it } from 'vitest';
import { ENVELOPE_HEADER, updateHash, verifyEnvelope } from '../../src/sync/envelope.js';
import { MAX_NESTING, parseUpdate, structRanges } from '../../src/yjs/parse.js';
import type { DocName } from '../../src/types.js';
import { testNode } from '../helpers/cluster.js';
import { getDoc, postUpdate } from '../helpers/docs.js';
import { b64 } from '../helpers/junk.js';
import { mallory } from '../helpers/mallory.js';
import { envelope, newFeed, yUpdate } from '../helpers/raw-peer.js';

describe('envelope token parts', () => {
  it('a payload with a character outside base64url is refused, as jose refuses it, and the node does not store it', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const update = yUpdate(31337, (d) => d.getMap('m').set('k', 'v'));
    const feed = newFeed();
    const claims = { iss: m.pair.id, doc: 'x/doc', feed, seq: 1, h: updateHash(update), clients: structRanges(parseUpdate(update).structs), iat: 1_700_000_000 };
    const p = b64(claims);
    const input = `${ENVELOPE_HEADER}.${p.slice(0, 10)}!${p.slice(10)}`;
    const token = `${input}.${sign(null, Buffer.from(input), m.pair.privateKey).toString('base64url')}`;

    await expect(jwtVerify(token, m.pair.publicKey, { algorithms: ['EdDSA'], typ: 'tessera-envelope+jwt' })).rejects.toThrow();
    expect(() => verifyEnvelope(token, update, m.pair.publicKey)).toThrow(/canonical base64url/);

    m.peer.offer({ token, update });
    await m.settle();
    expect((await target.daemon.docs.vector('x/doc' as DocName))[`${m.pair.id}:${feed}`]).toBeUndefined();
    expect((await target.daemon.verify()).ok).toBe(true);
  });
});

/** A V1 update: client 77 inserts into root array "a" one Any value nested `depth` arrays deep. */
function nestedAny(depth: number): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 1); // one client
  encoding.writeVarUint(e, 1); // one struct
  encoding.writeVarUint(e, 77); // client
  encoding.writeVarUint(e, 0); // clock
  encoding.writeUint8(e, 8); // ContentAny, parent stated
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 'a'); // root "a"
  encoding.writeVarUint(e, 1); // one value
  for (let i = 0; i < depth; i++) {
    encoding.writeUint8(e, 117); // lib0 any: array
    encoding.writeVarUint(e, 1);
  }
  encoding.writeUint8(e, 127); // undefined
  encoding.writeVarUint(e, 0); // empty delete set
  return encoding.toUint8Array(e);
}

/** The same as JSON content (ContentJSON), nested `depth` arrays deep. */
function nestedJson(depth: number): Uint8Array {
  const e = encoding.createEncoder();
  for (const n of [1, 1, 78, 0]) encoding.writeVarUint(e, n);
  encoding.writeUint8(e, 2); // ContentJSON, parent stated
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 'j');
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, '['.repeat(depth) + '"]]"' + ']'.repeat(depth));
  encoding.writeVarUint(e, 0);
  return encoding.toUint8Array(e);
}

describe('content nesting', () => {
  it('the parser takes MAX_NESTING levels and refuses one more, as Any and as JSON content', () => {
    for (const build of [nestedAny, nestedJson]) {
      expect(() => parseUpdate(build(MAX_NESTING))).not.toThrow();
      expect(() => parseUpdate(build(MAX_NESTING + 1))).toThrow(/nested deeper/);
      expect(() => parseUpdate(build(5000))).toThrow(/nested deeper/);
    }
  });

  it('from a peer: a value 5000 deep is refused and the document stays readable; one at the limit is applied', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const deep = newFeed();
    m.peer.offer(envelope(m.pair, { doc: 'x/deep', feed: deep, seq: 1, update: nestedAny(5000) }));
    const ok = newFeed();
    m.peer.offer(envelope(m.pair, { doc: 'x/ok', feed: ok, seq: 1, update: nestedAny(MAX_NESTING) }));
    await m.settle();
    expect((await target.daemon.docs.vector('x/deep' as DocName))[`${m.pair.id}:${deep}`]).toBeUndefined();
    expect((await target.daemon.docs.vector('x/ok' as DocName))[`${m.pair.id}:${ok}`]).toBe(1);
    expect((await getDoc(target, 'x/ok')).status).toBe(200);
  });

  it('from an app: a POST nested deeper than the limit is a 400, and nothing is stored', async () => {
    const target = await testNode('target');
    const r = await postUpdate(target, 'x/app', nestedJson(MAX_NESTING + 1));
    expect(r.status).toBe(400);
    expect((await getDoc(target, 'x/app')).status).toBe(404);
  });
});

/** Client `client` sets key "k" of root map "m" to a sub-document (ContentDoc) whose options are written by `opts` (a lib0 any). */
function subDoc(client: number, opts: (e: encoding.Encoder) => void): Uint8Array {
  const e = encoding.createEncoder();
  for (const n of [1, 1, client, 0]) encoding.writeVarUint(e, n);
  encoding.writeUint8(e, 9 | 0x20); // ContentDoc, parent stated, with a key
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 'm');
  encoding.writeVarString(e, 'k');
  encoding.writeVarString(e, 'guid-1');
  opts(e);
  encoding.writeVarUint(e, 0);
  return encoding.toUint8Array(e);
}

/** Client `client` inserts one Any value, a BigInt (lib0 tag 122), into root array "a". */
function bigIntAny(client: number): Uint8Array {
  const e = encoding.createEncoder();
  for (const n of [1, 1, client, 0]) encoding.writeVarUint(e, n);
  encoding.writeUint8(e, 8);
  encoding.writeVarUint(e, 1);
  encoding.writeVarString(e, 'a');
  encoding.writeVarUint(e, 1);
  encoding.writeUint8(e, 122);
  encoding.writeBigInt64(e, 5n);
  encoding.writeVarUint(e, 0);
  return encoding.toUint8Array(e);
}

describe('content Yjs would refuse, or no JSON read could show', () => {
  it('the parser refuses a sub-document whose options are not an object, and a BigInt; a sub-document with options passes', () => {
    expect(() => parseUpdate(subDoc(41, (e) => encoding.writeAny(e, null)))).toThrow(/sub-document options/);
    expect(() => parseUpdate(subDoc(41, (e) => encoding.writeAny(e, [1])))).toThrow(/sub-document options/);
    expect(() => parseUpdate(bigIntAny(43))).toThrow(/BigInt/);
    const honest = subDoc(41, (e) => encoding.writeAny(e, {}));
    expect(() => parseUpdate(honest)).not.toThrow();
    expect(() => Y.applyUpdate(new Y.Doc(), honest)).not.toThrow();
  });

  it('from a peer neither is stored, and the documents stay readable', async () => {
    const target = await testNode('target');
    const m = await mallory(target, [], [], { read: [], write: ['x/**'] });
    const [sub, big] = [newFeed(), newFeed()];
    m.peer.offer(envelope(m.pair, { doc: 'x/sub', feed: sub, seq: 1, update: subDoc(42, (e) => encoding.writeAny(e, null)) }));
    m.peer.offer(envelope(m.pair, { doc: 'x/big', feed: big, seq: 1, update: bigIntAny(43) }));
    await m.settle();
    expect((await target.daemon.docs.vector('x/sub' as DocName))[`${m.pair.id}:${sub}`]).toBeUndefined();
    expect((await target.daemon.docs.vector('x/big' as DocName))[`${m.pair.id}:${big}`]).toBeUndefined();
  });

  it('from an app: 400, and nothing signed or stored', async () => {
    const target = await testNode('target');
    for (const [doc, u] of [['x/app-sub', subDoc(44, (e) => encoding.writeAny(e, null))], ['x/app-big', bigIntAny(45)]] as const) {
      expect((await postUpdate(target, doc, u)).status).toBe(400);
      expect(await target.daemon.docs.vector(doc as DocName)).toEqual({});
    }
  });
});
