import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { calculateJwkThumbprint, jwtVerify, type JWTVerifyOptions } from 'jose';
import {
  deriveSessionKeys,
  diallerHeaderKey,
  encodeHello,
  parseHello,
  signDiallerToken,
  signListenerToken,
  transcript,
  verifyDiallerToken,
  verifyListenerToken,
  x25519Public,
} from '../../../src/protocol/handshake.js';
import { FrameCipher, frameNonce } from '../../../src/protocol/frames.js';
import { decodeMessage, encodeMessage } from '../../../src/protocol/messages.js';
import { PeerRefusal } from '../../../src/protocol/close-codes.js';
import { fromPrivateKey } from '../../../src/identity/keys.js';
import type { NodeId } from '../../../src/types.js';

/**
 * PROTOCOL.md §9: the test vectors. The first suite recomputes every value
 * from the fixed inputs with plain node:crypto (and jose's jwtVerify for the
 * tokens), using nothing from src/: it checks the document. The second feeds
 * the same inputs to the project's own codec: it ties the code to the document.
 */

const PROTOCOL_MD = new URL('../../../PROTOCOL.md', import.meta.url);

function parseVectors(markdown: string): Map<string, string> {
  const block = /^```vectors\n([\s\S]*?)^```$/m.exec(markdown);
  if (!block) throw new Error('PROTOCOL.md has no ```vectors block');
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

const vectors = parseVectors(readFileSync(PROTOCOL_MD, 'utf8'));
const v = (name: string): string => {
  const value = vectors.get(name);
  if (value === undefined) throw new Error(`PROTOCOL.md vectors lack ${name}`);
  return value;
};
const num = (name: string): number => {
  const n = Number(v(name));
  if (!Number.isInteger(n)) throw new Error(`vector ${name} is not an integer`);
  return n;
};
const bytes = (name: string): Buffer => Buffer.from(v(name), 'hex');

// ---------------------------------------------------------------------------
// Independent recomputation: node:crypto and jose only.
// ---------------------------------------------------------------------------

const ED25519_PKCS8 = '302e020100300506032b657004220420';
const X25519_PKCS8 = '302e020100300506032b656e04220420';
const ED25519_SPKI = '302a300506032b6570032100';
const X25519_SPKI = '302a300506032b656e032100';
/** RFC 7748 §6.1: the shared secret of the Alice and Bob keys the vectors use. */
const RFC7748_SHARED = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';

const fromSeed = (prefix: string, seedHex: string): KeyObject =>
  createPrivateKey({ key: Buffer.from(prefix + seedHex, 'hex'), format: 'der', type: 'pkcs8' });

/** The raw 32-byte public key: the tail of the SPKI DER, whose prefix is checked. */
function rawPublic(privateKey: KeyObject, spkiPrefix: string): Buffer {
  const der = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  expect(der.subarray(0, der.length - 32).toString('hex')).toBe(spkiPrefix);
  return der.subarray(der.length - 32);
}

const b64u = (b: Uint8Array | string): string => Buffer.from(b).toString('base64url');
const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const nodeId = (x: string): string => b64u(sha256(Buffer.from(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`, 'utf8')));

function gcmSeal(key: Buffer, counter: bigint, plaintext: Buffer): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(counter, 4);
  const c = createCipheriv('aes-256-gcm', key, iv);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

function gcmOpen(key: Buffer, counter: bigint, frame: Buffer): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64BE(counter, 4);
  const d = createDecipheriv('aes-256-gcm', key, iv);
  d.setAuthTag(frame.subarray(frame.length - 16));
  return Buffer.concat([d.update(frame.subarray(0, frame.length - 16)), d.final()]);
}

/** Builds the compact JWS from its exact header and payload JSON with node:crypto's Ed25519. */
function compactJws(headerJson: string, payloadJson: string, key: KeyObject): string {
  const input = `${b64u(headerJson)}.${b64u(payloadJson)}`;
  return `${input}.${b64u(sign(null, Buffer.from(input, 'ascii'), key))}`;
}

const TOLERANCE_S = 30;

/** The verification options of PROTOCOL.md §3.5 (T1–T7) for jose. */
function verifyOptions(typ: string, issuer: string, audience: string, iat: number, extra: string[]): JWTVerifyOptions {
  return {
    algorithms: ['EdDSA'],
    typ,
    issuer,
    audience,
    requiredClaims: ['iss', 'aud', 'exp', 'iat', 'jti', 'nonce', 'th', 'sttl', ...extra],
    maxTokenAge: 60,
    clockTolerance: TOLERANCE_S,
    currentDate: new Date(iat * 1000),
  };
}

describe('PROTOCOL.md test vectors, recomputed with plain node:crypto and jose', () => {
  const listener = fromSeed(ED25519_PKCS8, v('listener_identity_seed'));
  const dialler = fromSeed(ED25519_PKCS8, v('dialler_identity_seed'));
  const dEph = fromSeed(X25519_PKCS8, v('dialler_ephemeral_seed'));
  const lEph = fromSeed(X25519_PKCS8, v('listener_ephemeral_seed'));
  const th1 = bytes('th1');
  const th2 = bytes('th2');
  const th3 = bytes('th3');

  it('node ids are RFC 7638 thumbprints of the identity keys (§2)', async () => {
    for (const role of ['listener', 'dialler'] as const) {
      const raw = rawPublic(role === 'listener' ? listener : dialler, ED25519_SPKI);
      expect(raw.toString('hex')).toBe(v(`${role}_public`));
      expect(b64u(raw)).toBe(v(`${role}_public_x`));
      expect(nodeId(b64u(raw))).toBe(v(`${role}_id`));
      expect(v(`${role}_id`)).toHaveLength(43);
      // A second, independent thumbprint implementation agrees.
      expect(await calculateJwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: b64u(raw) }, 'sha256')).toBe(v(`${role}_id`));
    }
    // RFC 8032 §7.1 TEST 1 and TEST 3 public keys.
    expect(v('listener_public')).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(v('dialler_public')).toBe('fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025');
  });

  it('ephemeral keys and nonces are carried as base64url of their 32 raw bytes', () => {
    const dEpk = rawPublic(dEph, X25519_SPKI);
    const lEpk = rawPublic(lEph, X25519_SPKI);
    expect(dEpk.toString('hex')).toBe(v('dialler_epk_hex'));
    expect(lEpk.toString('hex')).toBe(v('listener_epk_hex'));
    expect(b64u(dEpk)).toBe(v('dialler_epk'));
    expect(b64u(lEpk)).toBe(v('listener_epk'));
    expect(bytes('dialler_nonce')).toHaveLength(32);
    expect(bytes('listener_nonce')).toHaveLength(32);
    expect(b64u(bytes('dialler_nonce'))).toBe(v('dialler_nonce_b64u'));
    expect(b64u(bytes('listener_nonce'))).toBe(v('listener_nonce_b64u'));
  });

  it('message 1 is the hello JSON and th1 its SHA-256 (§3.1, §3.4)', () => {
    const hello = `{"type":"hello","v":1,"from":"${v('dialler_id')}","to":"${v('listener_id')}","epk":"${v('dialler_epk')}","nonce":"${v('dialler_nonce_b64u')}"}`;
    expect(v('message1')).toBe(hello);
    expect(Buffer.byteLength(hello)).toBeLessThanOrEqual(1024);
    expect(sha256(Buffer.from(hello, 'utf8')).toString('hex')).toBe(v('th1'));
  });

  it('message 2 is the listener token, byte for byte, and th2 hashes it onto th1 (§3.2)', async () => {
    const iat = num('listener_iat');
    const header = '{"alg":"EdDSA","typ":"tessera-hs-listener+jwt"}';
    const payload =
      `{"nonce":"${v('dialler_nonce_b64u')}","epk":"${v('listener_epk')}","snonce":"${v('listener_nonce_b64u')}",` +
      `"th":"${b64u(th1)}","sttl":${num('listener_sttl')},"iss":"${v('listener_id')}","aud":"${v('dialler_id')}",` +
      `"iat":${iat},"exp":${iat + 60},"jti":"${v('listener_jti')}"}`;
    expect(v('message2_header')).toBe(header);
    expect(v('message2_payload')).toBe(payload);
    const m2 = v('message2');
    expect(compactJws(header, payload, listener)).toBe(m2);
    expect(m2.length).toBeLessThanOrEqual(4096);

    const [h, p, s] = m2.split('.') as [string, string, string];
    expect(verify(null, Buffer.from(`${h}.${p}`), createPublicKey(listener), Buffer.from(s, 'base64url'))).toBe(true);

    const { payload: claims, protectedHeader } = await jwtVerify(
      m2,
      createPublicKey(listener),
      verifyOptions('tessera-hs-listener+jwt', v('listener_id'), v('dialler_id'), iat, ['epk', 'snonce']),
    );
    expect(protectedHeader).toEqual({ alg: 'EdDSA', typ: 'tessera-hs-listener+jwt' });
    expect(typeof claims.aud).toBe('string');
    expect(claims.nonce).toBe(v('dialler_nonce_b64u'));
    expect(claims.th).toBe(b64u(sha256(Buffer.from(v('message1'), 'utf8'))));
    expect(claims.epk).toBe(v('listener_epk'));
    expect(claims.snonce).toBe(v('listener_nonce_b64u'));
    expect(claims.sttl).toBe(num('listener_sttl'));
    expect(claims.exp! - claims.iat!).toBe(60);

    expect(sha256(th1, Buffer.from(m2, 'ascii')).toString('hex')).toBe(v('th2'));
  });

  it('message 3 is the dialler token with its key in the header, and th3 hashes it onto th2 (§3.3)', async () => {
    const iat = num('dialler_iat');
    const header = `{"alg":"EdDSA","typ":"tessera-hs-dialler+jwt","jwk":{"kty":"OKP","crv":"Ed25519","x":"${v('dialler_public_x')}"}}`;
    const payload =
      `{"nonce":"${v('listener_nonce_b64u')}","th":"${b64u(th2)}","sttl":${num('dialler_sttl')},` +
      `"iss":"${v('dialler_id')}","aud":"${v('listener_id')}","iat":${iat},"exp":${iat + 60},"jti":"${v('dialler_jti')}"}`;
    expect(v('message3_header')).toBe(header);
    expect(v('message3_payload')).toBe(payload);
    const m3 = v('message3');
    expect(compactJws(header, payload, dialler)).toBe(m3);
    expect(m3.length).toBeLessThanOrEqual(4096);

    // The listener takes the key from the header, checks its thumbprint is iss, and verifies with it.
    const jwk = JSON.parse(Buffer.from(m3.split('.')[0]!, 'base64url').toString('utf8')).jwk as { kty: string; crv: string; x: string };
    expect(nodeId(jwk.x)).toBe(v('dialler_id'));
    const headerKey = createPublicKey({ key: jwk, format: 'jwk' });
    const { payload: claims } = await jwtVerify(m3, headerKey, verifyOptions('tessera-hs-dialler+jwt', v('dialler_id'), v('listener_id'), iat, []));
    expect(typeof claims.aud).toBe('string');
    expect(claims.nonce).toBe(v('listener_nonce_b64u'));
    expect(claims.th).toBe(b64u(th2));
    expect(claims.sttl).toBe(num('dialler_sttl'));
    expect(claims.exp! - claims.iat!).toBe(60);

    expect(sha256(th2, Buffer.from(m3, 'ascii')).toString('hex')).toBe(v('th3'));
  });

  it('the tokens are refused outside the rules of §3.5', async () => {
    const m2 = v('message2');
    const iat = num('listener_iat');
    const key = createPublicKey(listener);
    const opts = (typ: string, at: number) => verifyOptions(typ, v('listener_id'), v('dialler_id'), at, ['epk', 'snonce']);
    // Each message's own typ only.
    await expect(jwtVerify(m2, key, opts('tessera-hs-dialler+jwt', iat))).rejects.toThrow(/typ/);
    // Accepted from iat - tolerance up to, not including, exp + tolerance.
    await expect(jwtVerify(m2, key, opts('tessera-hs-listener+jwt', iat - TOLERANCE_S))).resolves.toBeDefined();
    await expect(jwtVerify(m2, key, opts('tessera-hs-listener+jwt', iat - TOLERANCE_S - 1))).rejects.toThrow(/iat/);
    await expect(jwtVerify(m2, key, opts('tessera-hs-listener+jwt', iat + 60 + TOLERANCE_S - 1))).resolves.toBeDefined();
    await expect(jwtVerify(m2, key, opts('tessera-hs-listener+jwt', iat + 60 + TOLERANCE_S))).rejects.toThrow(/exp/);
    // Signed by the other node: not the listener's token.
    await expect(jwtVerify(m2, createPublicKey(dialler), opts('tessera-hs-listener+jwt', iat))).rejects.toThrow(/signature/);
  });

  it('the X25519 shared secret is the same both ways and is RFC 7748 §6.1 (§3.6)', () => {
    const a = diffieHellman({ privateKey: dEph, publicKey: createPublicKey(lEph) });
    const b = diffieHellman({ privateKey: lEph, publicKey: createPublicKey(dEph) });
    expect(a.toString('hex')).toBe(b.toString('hex'));
    expect(a.toString('hex')).toBe(v('shared_secret'));
    expect(a.toString('hex')).toBe(RFC7748_SHARED);
    expect(a.every((x) => x === 0)).toBe(false);
  });

  it('the session keys are HKDF-SHA256 of the shared secret, salt th3, one info string per direction', () => {
    const shared = bytes('shared_secret');
    const d2l = Buffer.from(hkdfSync('sha256', shared, th3, Buffer.from('tessera.v1 dialler->listener', 'ascii'), 32));
    const l2d = Buffer.from(hkdfSync('sha256', shared, th3, Buffer.from('tessera.v1 listener->dialler', 'ascii'), 32));
    expect(d2l.toString('hex')).toBe(v('key_d2l'));
    expect(l2d.toString('hex')).toBe(v('key_l2d'));
    expect(d2l.equals(l2d)).toBe(false);
    expect(num('session_lifetime')).toBe(Math.min(num('listener_sttl'), num('dialler_sttl')));
  });

  it('the first frames are AES-256-GCM of the grants message with counter nonces and no AAD (§4, §5)', () => {
    const plaintext = Buffer.concat([Buffer.from([0x01]), Buffer.from('{"grants":[],"revocations":[]}', 'utf8')]);
    expect(plaintext.toString('hex')).toBe(v('grants_plaintext'));
    const nonce = (n: bigint) => Buffer.concat([Buffer.alloc(4), Buffer.from(n.toString(16).padStart(16, '0'), 'hex')]);
    expect(nonce(0n).toString('hex')).toBe(v('frame_nonce_0'));
    expect(nonce(1n).toString('hex')).toBe(v('frame_nonce_1'));

    const d2l = bytes('key_d2l');
    const l2d = bytes('key_l2d');
    expect(gcmSeal(d2l, 0n, plaintext).toString('hex')).toBe(v('frame_d2l_0'));
    expect(gcmSeal(l2d, 0n, plaintext).toString('hex')).toBe(v('frame_l2d_0'));
    expect(gcmSeal(d2l, 1n, plaintext).toString('hex')).toBe(v('frame_d2l_1'));
    expect(bytes('frame_d2l_0')).toHaveLength(plaintext.length + 16);

    expect(gcmOpen(d2l, 0n, bytes('frame_d2l_0')).equals(plaintext)).toBe(true);
    expect(gcmOpen(l2d, 0n, bytes('frame_l2d_0')).equals(plaintext)).toBe(true);
    expect(gcmOpen(d2l, 1n, bytes('frame_d2l_1')).equals(plaintext)).toBe(true);
    // Wrong counter (a replay or reorder) or wrong direction: the tag fails.
    expect(() => gcmOpen(d2l, 1n, bytes('frame_d2l_0'))).toThrow();
    expect(() => gcmOpen(l2d, 0n, bytes('frame_d2l_0'))).toThrow();
  });
});

// ---------------------------------------------------------------------------
// The project's own codec, given the same inputs, produces the same bytes.
// ---------------------------------------------------------------------------

describe('the project codec reproduces the PROTOCOL.md vectors', () => {
  const edKey = (name: string) => fromSeed(ED25519_PKCS8, v(name));
  const xKey = (name: string) => fromSeed(X25519_PKCS8, v(name));
  const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

  async function handshake() {
    const listener = await fromPrivateKey(edKey('listener_identity_seed'));
    const dialler = await fromPrivateKey(edKey('dialler_identity_seed'));
    const dEph = xKey('dialler_ephemeral_seed');
    const lEph = xKey('listener_ephemeral_seed');
    const dNonce = v('dialler_nonce_b64u');
    const lNonce = v('listener_nonce_b64u');
    const m1 = encodeHello({ from: dialler.id, to: listener.id, epk: x25519Public(createPublicKey(dEph)), nonce: dNonce });
    const th1 = transcript(undefined, m1);
    const m2 = await signListenerToken({
      signer: listener,
      audience: dialler.id,
      iat: num('listener_iat'),
      jti: v('listener_jti'),
      sessionTtlS: num('listener_sttl'),
      dialerNonce: dNonce,
      epk: x25519Public(createPublicKey(lEph)),
      nonce: lNonce,
      th1,
    });
    const th2 = transcript(th1, Buffer.from(m2));
    const m3 = await signDiallerToken({
      signer: dialler,
      publicJwk: dialler.publicJwk,
      audience: listener.id,
      iat: num('dialler_iat'),
      jti: v('dialler_jti'),
      sessionTtlS: num('dialler_sttl'),
      listenerNonce: lNonce,
      th2,
    });
    const th3 = transcript(th2, Buffer.from(m3));
    return { listener, dialler, dEph, lEph, m1, m2, m3, th1, th2, th3 };
  }

  it('ids, messages and transcript hashes', async () => {
    const h = await handshake();
    expect(h.listener.id).toBe(v('listener_id'));
    expect(h.dialler.id).toBe(v('dialler_id'));
    expect(h.dialler.publicJwk.x).toBe(v('dialler_public_x'));
    expect(Buffer.from(h.m1).toString('utf8')).toBe(v('message1'));
    expect(h.m2).toBe(v('message2'));
    expect(h.m3).toBe(v('message3'));
    expect(hex(h.th1)).toBe(v('th1'));
    expect(hex(h.th2)).toBe(v('th2'));
    expect(hex(h.th3)).toBe(v('th3'));
  });

  it('session keys on both sides, and the first frames each way', async () => {
    const h = await handshake();
    const atListener = deriveSessionKeys(h.lEph, v('dialler_epk'), h.th3);
    const atDialler = deriveSessionKeys(h.dEph, v('listener_epk'), h.th3);
    for (const keys of [atListener, atDialler]) {
      expect(hex(keys.d2l)).toBe(v('key_d2l'));
      expect(hex(keys.l2d)).toBe(v('key_l2d'));
    }
    const grants = encodeMessage({ type: 'grants', grants: [], revocations: [] });
    expect(hex(grants)).toBe(v('grants_plaintext'));
    expect(hex(frameNonce(0n))).toBe(v('frame_nonce_0'));
    expect(hex(frameNonce(1n))).toBe(v('frame_nonce_1'));
    const dSend = new FrameCipher(atDialler.d2l);
    expect(hex(dSend.seal(grants))).toBe(v('frame_d2l_0'));
    expect(hex(dSend.seal(grants))).toBe(v('frame_d2l_1'));
    expect(hex(new FrameCipher(atListener.l2d).seal(grants))).toBe(v('frame_l2d_0'));

    // And the receiving halves accept them, in order.
    const lRecv = new FrameCipher(atListener.d2l);
    expect(decodeMessage(lRecv.open(bytes('frame_d2l_0')))).toEqual({ type: 'grants', grants: [], revocations: [] });
    expect(decodeMessage(lRecv.open(bytes('frame_d2l_1')))).toEqual({ type: 'grants', grants: [], revocations: [] });
    expect(decodeMessage(new FrameCipher(atDialler.l2d).open(bytes('frame_l2d_0')))).toEqual({ type: 'grants', grants: [], revocations: [] });

    // Ciphers made ahead of their frame (FrameCipher.prepare) give the same bytes and accept the same frames.
    const early = new FrameCipher(atDialler.d2l);
    early.prepare('seal');
    expect(hex(early.seal(grants))).toBe(v('frame_d2l_0'));
    early.prepare('seal');
    early.prepare('seal');
    expect(hex(early.seal(grants))).toBe(v('frame_d2l_1'));
    const earlyRecv = new FrameCipher(atListener.d2l);
    earlyRecv.prepare('open');
    expect(() => earlyRecv.open(bytes('frame_d2l_1'))).toThrow(PeerRefusal);
    earlyRecv.prepare('open');
    expect(decodeMessage(earlyRecv.open(bytes('frame_d2l_0')))).toEqual({ type: 'grants', grants: [], revocations: [] });
    earlyRecv.prepare('open');
    expect(() => earlyRecv.open(bytes('frame_d2l_0'))).toThrow(PeerRefusal);
    expect(decodeMessage(earlyRecv.open(bytes('frame_d2l_1')))).toEqual({ type: 'grants', grants: [], revocations: [] });
  });

  it("the project's verifiers accept the vector messages at their iat", async () => {
    const h = await handshake();
    const hello = parseHello(Buffer.from(v('message1'), 'utf8'));
    expect(hello).toEqual({ from: v('dialler_id'), to: v('listener_id'), epk: v('dialler_epk'), nonce: v('dialler_nonce_b64u') });
    const m2 = await verifyListenerToken(v('message2'), h.listener.publicKey, {
      self: v('dialler_id') as NodeId,
      now: num('listener_iat') * 1000,
      clockToleranceS: TOLERANCE_S,
      listener: v('listener_id') as NodeId,
      dialerNonce: v('dialler_nonce_b64u'),
      th1: bytes('th1'),
    });
    expect(m2.payload.epk).toBe(v('listener_epk'));
    const headerKey = diallerHeaderKey(v('message3'), v('dialler_id') as NodeId);
    expect(headerKey.x).toBe(v('dialler_public_x'));
    const m3 = await verifyDiallerToken(v('message3'), headerKey, {
      self: v('listener_id') as NodeId,
      now: num('dialler_iat') * 1000,
      clockToleranceS: TOLERANCE_S,
      dialler: v('dialler_id') as NodeId,
      listenerNonce: v('listener_nonce_b64u'),
      th2: bytes('th2'),
    });
    expect(Math.min(m2.payload.sttl, m3.payload.sttl)).toBe(num('session_lifetime'));
  });

  it('a low-order ephemeral key is refused with 4006 (§3.6)', async () => {
    const h = await handshake();
    const zero = b64u(Buffer.alloc(32));
    const refusal = (() => {
      try {
        deriveSessionKeys(h.lEph, zero, h.th3);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(refusal).toBeInstanceOf(PeerRefusal);
    expect((refusal as PeerRefusal).kind.code).toBe(4006);
  });
});
