import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import * as Y from 'yjs';
import { ENVELOPE_HEADER, readEnvelopeClaims, signEnvelope, updateHash, verifyEnvelope, type EnvelopeClaims } from '../../../src/sync/envelope.js';
import { decodeMessage, encodeMessage } from '../../../src/protocol/messages.js';
import { PeerRefusal } from '../../../src/protocol/close-codes.js';
import { parseUpdate, structRanges } from '../../../src/yjs/parse.js';
import { vectorHash } from '../../../src/sync/vector.js';
import { fromPrivateKey } from '../../../src/identity/keys.js';
import type { DocName, FeedId, NodeId } from '../../../src/types.js';

/**
 * PROTOCOL.md §6.11: the worked sync example. The first suite re-derives
 * every value from the fixed inputs with node:crypto, jose, yjs (to build the
 * update) and a hand-written lib0 varUint reader and writer, using nothing
 * from src/: it checks the document. The second feeds the same inputs to the
 * project's own functions: it ties the code to the document.
 */

const PROTOCOL_MD = readFileSync(new URL('../../../PROTOCOL.md', import.meta.url), 'utf8');

function parseBlock(markdown: string, fence: string): Map<string, string> {
  const block = new RegExp(`^\`\`\`${fence}\\n([\\s\\S]*?)^\`\`\`$`, 'm').exec(markdown);
  if (!block) throw new Error(`PROTOCOL.md has no \`\`\`${fence} block`);
  const out = new Map<string, string>();
  for (const line of block[1]!.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const at = line.indexOf(': ');
    if (at < 1) throw new Error(`bad vector line: ${line}`);
    const name = line.slice(0, at);
    if (out.has(name)) throw new Error(`vector ${name} given twice`);
    out.set(name, line.slice(at + 2));
  }
  return out;
}

const vectors = parseBlock(PROTOCOL_MD, 'sync-vectors');
const handshakeVectors = parseBlock(PROTOCOL_MD, 'vectors');
const v = (name: string): string => {
  const value = vectors.get(name);
  if (value === undefined) throw new Error(`PROTOCOL.md sync-vectors lack ${name}`);
  return value;
};
const num = (name: string): number => {
  const n = Number(v(name));
  if (!Number.isSafeInteger(n)) throw new Error(`vector ${name} is not an integer`);
  return n;
};
const bytes = (name: string): Buffer => {
  const s = v(name);
  if (!/^([0-9a-f]{2})*$/.test(s)) throw new Error(`vector ${name} is not lowercase hex`);
  return Buffer.from(s, 'hex');
};

const ED25519_PKCS8 = '302e020100300506032b657004220420';
const ED25519_SPKI = '302a300506032b6570032100';
const ENVELOPE_TYP = 'tessera-envelope+jwt';
const b64u = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');
const sha256 = (b: Uint8Array | string): Buffer => createHash('sha256').update(b).digest();
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------------------
// A minimal lib0 reader and writer, written from PROTOCOL.md §6.5.
// ---------------------------------------------------------------------------

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  constructor(buf: Uint8Array) {
    this.buf = buf;
  }
  byte(): number {
    if (this.pos >= this.buf.length) throw new Error('unexpected end');
    return this.buf[this.pos++]!;
  }
  /** 7-bit groups, least significant first; the high bit says another byte follows. */
  varUint(): number {
    let n = 0;
    let mult = 1;
    for (;;) {
      const b = this.byte();
      n += (b & 0x7f) * mult;
      if (n > Number.MAX_SAFE_INTEGER) throw new Error('varUint out of range');
      if (b < 0x80) return n;
      mult *= 128;
    }
  }
  take(len: number): Uint8Array {
    if (this.pos + len > this.buf.length) throw new Error('length runs past the end');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  varUint8Array(): Uint8Array {
    return this.take(this.varUint());
  }
  varString(): string {
    return new TextDecoder('utf-8', { fatal: true }).decode(this.varUint8Array());
  }
  get done(): boolean {
    return this.pos === this.buf.length;
  }
}

function writeVarUint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push(0x80 | (n % 128));
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

const varUint8Array = (b: Uint8Array): Buffer => Buffer.concat([Buffer.from(writeVarUint(b.length)), b]);

/**
 * The `clients` ranges of a V1 update, from §6.7 and §6.7.1, for the struct
 * kinds the example needs (GC, String, Skip): every struct but Skips as
 * [client, clock, clock + length), sorted, touching ranges merged.
 */
function clientRanges(update: Uint8Array): [number, number, number][] {
  const r = new Reader(update);
  const spans: [number, number, number][] = [];
  const groups = r.varUint();
  for (let g = 0; g < groups; g++) {
    const structs = r.varUint();
    const client = r.varUint();
    let clock = r.varUint();
    for (let s = 0; s < structs; s++) {
      const info = r.byte();
      const kind = info & 0x1f;
      let length: number;
      if (kind === 0 || kind === 10) {
        length = r.varUint();
      } else if (kind === 4) {
        const id = () => [r.varUint(), r.varUint()];
        if (info & 0x80) id(); // origin
        if (info & 0x40) id(); // right origin
        if ((info & 0xc0) === 0) {
          if (r.varUint() === 1) r.varString(); // root type name
          else id(); // parent item
          if (info & 0x20) r.varString(); // parent sub-key
        }
        length = r.varString().length; // UTF-16 code units
      } else {
        throw new Error(`struct kind ${kind} is beyond this minimal reader`);
      }
      if (length < 1) throw new Error('empty struct');
      if (kind !== 10) spans.push([client, clock, clock + length]);
      clock += length;
    }
  }
  const deleteClients = r.varUint();
  for (let i = 0; i < deleteClients; i++) {
    r.varUint();
    const n = r.varUint();
    for (let j = 0; j < n; j++) {
      r.varUint();
      r.varUint();
    }
  }
  if (!r.done) throw new Error('bytes left over after the update');
  spans.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: [number, number, number][] = [];
  for (const s of spans) {
    const last = out[out.length - 1];
    if (last && last[0] === s[0] && s[1] <= last[2]) last[2] = Math.max(last[2], s[2]);
    else out.push([...s]);
  }
  return out;
}

/** §6.8: SHA-256 over `key=seq;` in ascending key order, base64url, first 22 characters. */
function vectorHashByHand(vector: Record<string, number>): string {
  const keys = Object.keys(vector).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return b64u(sha256(keys.map((k) => `${k}=${vector[k]};`).join(''))).slice(0, 22);
}

const withType = (type: number, json: string): Buffer => Buffer.concat([Buffer.from([type]), Buffer.from(json, 'utf8')]);

// ---------------------------------------------------------------------------
// Independent recomputation.
// ---------------------------------------------------------------------------

describe('PROTOCOL.md sync example, recomputed independently', () => {
  const privateKey: KeyObject = createPrivateKey({ key: Buffer.from(ED25519_PKCS8 + v('identity_seed'), 'hex'), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const x = b64u(spki.subarray(spki.length - 32));
  const iss = b64u(sha256(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`));
  const feed = v('feed');
  const feedKey = `${iss}:${feed}`;
  const update = bytes('update');
  const token = v('envelope_token');

  it('uses the listener identity of §9 and derives iss and the feed key', () => {
    expect(spki.subarray(0, spki.length - 32).toString('hex')).toBe(ED25519_SPKI);
    expect(v('identity_seed')).toBe(handshakeVectors.get('listener_identity_seed'));
    expect(iss).toBe(v('iss'));
    expect(iss).toBe(handshakeVectors.get('listener_id'));
    expect(feed).toBe(b64u(Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex')));
    expect(feed).toMatch(/^[A-Za-z0-9_-]{1,64}$/);
    expect(v('feed_key')).toBe(feedKey);
    expect(feedKey).toMatch(/^[A-Za-z0-9_-]{43}:[A-Za-z0-9_-]{1,64}$/);
  });

  it('the update is what Yjs encodes for the stated inputs, and its clients ranges follow', () => {
    const doc = new Y.Doc();
    doc.clientID = num('yjs_client_id');
    doc.getText(v('yjs_text_root')).insert(0, v('yjs_text_insert'));
    expect(hex(Y.encodeStateAsUpdate(doc))).toBe(v('update'));
    const ranges = clientRanges(update);
    expect(ranges).toEqual([[num('yjs_client_id'), 0, v('yjs_text_insert').length]]);
    expect(JSON.stringify(ranges)).toBe(v('clients'));
  });

  it('h is the SHA-256 of the update bytes', () => {
    expect(hex(sha256(update))).toBe(v('h_hex'));
    expect(b64u(sha256(update))).toBe(v('h'));
  });

  it('the header and claims are exactly as §6.7 says, in table order', () => {
    expect(v('envelope_header')).toBe(`{"alg":"EdDSA","typ":"${ENVELOPE_TYP}"}`);
    expect(Buffer.byteLength(v('envelope_header'))).toBe(44);
    expect(b64u(v('envelope_header'))).toBe('eyJhbGciOiJFZERTQSIsInR5cCI6InRlc3NlcmEtZW52ZWxvcGUrand0In0');
    const payload =
      `{"iss":"${iss}","doc":"${v('doc')}","feed":"${feed}","seq":${num('seq')},` +
      `"h":"${b64u(sha256(update))}","clients":${JSON.stringify(clientRanges(update))},"iat":${num('iat')}}`;
    expect(v('envelope_payload')).toBe(payload);
    expect(Object.keys(JSON.parse(payload) as object).sort()).toEqual(['clients', 'doc', 'feed', 'h', 'iat', 'iss', 'seq']);
  });

  it('the token is the Ed25519 compact JWS over header and payload, signed with the seed', () => {
    const input = `${b64u(v('envelope_header'))}.${b64u(v('envelope_payload'))}`;
    const signature = sign(null, Buffer.from(input, 'ascii'), privateKey);
    expect(hex(signature)).toBe(v('envelope_signature'));
    expect(`${input}.${b64u(signature)}`).toBe(token);
    const parts = token.split('.');
    expect(parts).toHaveLength(3);
    expect(parts[2]).toHaveLength(86);
    expect(verify(null, Buffer.from(`${parts[0]}.${parts[1]}`, 'ascii'), publicKey, Buffer.from(parts[2]!, 'base64url'))).toBe(true);
  });

  it('jose verifies the token with EdDSA and the envelope typ, and refuses it as another kind', async () => {
    const { payload, protectedHeader } = await jwtVerify(token, publicKey, {
      algorithms: ['EdDSA'],
      typ: ENVELOPE_TYP,
      currentDate: new Date(num('iat') * 1000),
    });
    expect(protectedHeader).toEqual({ alg: 'EdDSA', typ: ENVELOPE_TYP });
    expect(payload).toEqual(JSON.parse(v('envelope_payload')));
    await expect(jwtVerify(token, publicKey, { algorithms: ['EdDSA'], typ: 'tessera-grant+jwt' })).rejects.toThrow();
    await expect(jwtVerify(token, publicKey, { algorithms: ['ES256'], typ: ENVELOPE_TYP })).rejects.toThrow();
    const tampered = token.replace(b64u(v('envelope_payload')), b64u(v('envelope_payload').replace('"seq":1', '"seq":2')));
    await expect(jwtVerify(tampered, publicKey, { algorithms: ['EdDSA'], typ: ENVELOPE_TYP })).rejects.toThrow();
  });

  it('varUint follows the examples of §6.5', () => {
    const examples: [number, string][] = [
      [0, '00'],
      [1, '01'],
      [127, '7f'],
      [128, '8001'],
      [300, 'ac02'],
      [413, '9d03'],
      [1234, 'd209'],
      [16384, '808001'],
    ];
    for (const [n, h] of examples) {
      expect(hex(Buffer.from(writeVarUint(n)))).toBe(h);
      expect(new Reader(Buffer.from(h, 'hex')).varUint()).toBe(n);
    }
  });

  it('the envelopes message (0x04) is type, count, then varString token and varUint8Array update', () => {
    const msg = bytes('envelopes_plaintext');
    const r = new Reader(msg);
    expect(r.byte()).toBe(0x04);
    expect(r.varUint()).toBe(1);
    expect(hex(msg.subarray(2, 4))).toBe('9d03');
    expect(r.varString()).toBe(token);
    expect(hex(r.varUint8Array())).toBe(v('update'));
    expect(r.done).toBe(true);
    const rebuilt = Buffer.concat([Buffer.from([0x04, ...writeVarUint(1)]), varUint8Array(Buffer.from(token, 'utf8')), varUint8Array(update)]);
    expect(hex(rebuilt)).toBe(v('envelopes_plaintext'));
  });

  it('vector hashes and the JSON sync messages follow §6.3, §6.4, §6.6 and §6.8', () => {
    const vector = { [feedKey]: num('seq') };
    expect(v('vector')).toBe(JSON.stringify(vector));
    expect(vectorHashByHand(vector)).toBe(v('vector_hash'));
    expect(b64u(sha256(`${feedKey}=1;`)).slice(0, 22)).toBe(v('vector_hash'));
    expect(vectorHashByHand({})).toBe(v('empty_vector_hash'));
    expect(v('empty_vector_hash')).toBe('47DEQpj8HBSa-_TImW-5JC');
    expect(hex(withType(0x02, `{"docs":[["${v('doc')}","${v('vector_hash')}"]]}`))).toBe(v('announce_plaintext'));
    expect(hex(withType(0x03, `{"docs":{"${v('doc')}":{}}}`))).toBe(v('want_plaintext'));
    expect(hex(withType(0x05, `{"items":[["${v('doc')}","${feedKey}"]]}`))).toBe(v('not_wanted_plaintext'));
  });
});

// ---------------------------------------------------------------------------
// The project's own functions give the same bytes.
// ---------------------------------------------------------------------------

describe('the project reproduces the PROTOCOL.md sync example', () => {
  const privateKey = createPrivateKey({ key: Buffer.from(ED25519_PKCS8 + v('identity_seed'), 'hex'), format: 'der', type: 'pkcs8' });
  const update = new Uint8Array(bytes('update'));
  const token = v('envelope_token');
  const docName = v('doc') as DocName;

  function claims(): EnvelopeClaims {
    return {
      iss: v('iss') as NodeId,
      doc: docName,
      feed: v('feed') as FeedId,
      seq: num('seq'),
      h: updateHash(update),
      clients: structRanges(parseUpdate(update).structs),
      iat: num('iat'),
    };
  }

  it('identity, update hash, clients, header and token', async () => {
    const pair = await fromPrivateKey(privateKey);
    expect(pair.id).toBe(v('iss'));
    expect(updateHash(update)).toBe(v('h'));
    expect(JSON.stringify(structRanges(parseUpdate(update).structs))).toBe(v('clients'));
    expect(ENVELOPE_HEADER).toBe(token.split('.')[0]);
    expect(signEnvelope(claims(), privateKey)).toBe(token);
    expect(verifyEnvelope(token, update, pair.publicKey)).toEqual(JSON.parse(v('envelope_payload')));
    expect(readEnvelopeClaims(token)).toEqual(claims());
    const other = new Uint8Array(update);
    other[other.length - 2] ^= 1;
    expect(() => verifyEnvelope(token, other, pair.publicKey)).toThrow(/h does not match/);
  });

  it('the sync messages encode and decode to the documented bytes', () => {
    const feedKey = v('feed_key');
    expect(hex(encodeMessage({ type: 'envelopes', items: [{ token, update }] }))).toBe(v('envelopes_plaintext'));
    expect(vectorHash({ [feedKey]: num('seq') })).toBe(v('vector_hash'));
    expect(vectorHash({})).toBe(v('empty_vector_hash'));
    expect(hex(encodeMessage({ type: 'announce', docs: [[docName, v('vector_hash')]] }))).toBe(v('announce_plaintext'));
    expect(hex(encodeMessage({ type: 'want', docs: { [docName]: {} } }))).toBe(v('want_plaintext'));
    expect(hex(encodeMessage({ type: 'notWanted', items: [[docName, feedKey]] }))).toBe(v('not_wanted_plaintext'));

    const decoded = decodeMessage(bytes('envelopes_plaintext'));
    expect(decoded.type).toBe('envelopes');
    if (decoded.type !== 'envelopes') return;
    expect(decoded.items).toHaveLength(1);
    expect(decoded.items[0]!.token).toBe(token);
    expect(hex(decoded.items[0]!.update)).toBe(v('update'));
    expect(decodeMessage(bytes('announce_plaintext'))).toEqual({ type: 'announce', docs: [[docName, v('vector_hash')]] });
    expect(decodeMessage(bytes('want_plaintext'))).toEqual({ type: 'want', docs: { [docName]: {} } });
    expect(decodeMessage(bytes('not_wanted_plaintext'))).toEqual({ type: 'notWanted', items: [[docName, feedKey]] });
  });

  it('a 0x04 message with a byte left over, or cut short, is a protocol error (4018)', () => {
    const msg = bytes('envelopes_plaintext');
    for (const bad of [Buffer.concat([msg, Buffer.from([0])]), msg.subarray(0, msg.length - 1)]) {
      let err: unknown;
      try {
        decodeMessage(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PeerRefusal);
      expect((err as PeerRefusal).kind.code).toBe(4018);
    }
  });
});
