/**
 * Attacks on the peer handshake (DESIGN.md §3, PROTOCOL.md §1-§5, issue 3),
 * each against a real running node over a real socket. Every test asserts
 * the close code from the Close table, that the node still serves, and that
 * its session with a third, honest node is the same object, still open, and
 * still carries frames both ways (arena.ts).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { readKeyFile } from '../../src/identity/file.js';
import { generateKeyPair, type KeyPair } from '../../src/identity/keys.js';
import { Close } from '../../src/protocol/close-codes.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { deriveSessionKeys } from '../../src/protocol/handshake.js';
import { decodeMessage, encodeMessage } from '../../src/protocol/messages.js';
import { Typ } from '../../src/tokens/typ.js';
import type { NodeId } from '../../src/types.js';
import { entryFor, setPeers, testNode } from '../helpers/cluster.js';
import { nodeDir, spawnNode, writePeers } from '../helpers/node.js';
import { waitUntil } from '../helpers/wait.js';
import {
  INVALID_FRAME,
  arena,
  captureUncaught,
  enterSession,
  expectClose,
  expectNoSession,
  expectUndisturbed,
  listed,
  ready,
  skewIn,
  startDial,
  within,
  type Arena,
} from './arena.js';
import {
  ClosedError,
  RawPeer,
  b64u,
  clientFrameHeader,
  decodeParts,
  emptyGrants,
  fakeListener,
  finishAsDialler,
  flipBit,
  flipInJwsMember,
  flipInSignature,
  flipPositionInValue,
  honestDial,
  listenerReply,
  m3Claims,
  m3Header,
  makeHello,
  nowS,
  readReply,
  sealMessage,
  sha256,
  sign,
  signRaw,
  tcpExchange,
  unsigned,
  upgradeRequest,
  type BitPosition,
} from './raw-peer.js';

// ------------------------------------------------------------------ the listener refuses forged identities and tokens

describe('message 3 forgeries against a listening node', () => {
  it('an unknown peer is refused with 4004, and the refusal is logged with its claimed id and address', async () => {
    const a = await arena();
    const stranger = await generateKeyPair();
    const peer = await RawPeer.connect(a.target.url);
    peer.text(makeHello(stranger.id, a.target.id).bytes);
    await expectClose(peer, Close.unknownPeer.code);
    await waitUntil(() => a.target.lines.find((l) => l.code === Close.unknownPeer.code && l.claimedId === stranger.id && typeof l.remote === 'string' && l.remote.startsWith('127.0.0.1:')), {
      what: 'a refusal log line naming the claimed id and address',
    });
    await expectNoSession(a, stranger.id);
    await expectUndisturbed(a);
  });

  it('a listed id (the honest peer\'s, with a live session) with another key in the header is refused (4009)', async () => {
    const a = await arena();
    const evil = await generateKeyPair();
    const { peer, reply } = await startDial(a, a.honest);
    const m3 = await sign(m3Header(evil.publicJwk), m3Claims({ ...evil, id: a.honest.id as NodeId }, a.target.id, reply), evil.privateKey);
    peer.text(m3);
    await expectClose(peer, [Close.keyMismatch.code, Close.badToken.code]);
    await expectUndisturbed(a, { secrets: [m3] });
  });

  it('a listed id with its pinned key in the header but signed with another key is refused (4006)', async () => {
    const a = await arena();
    const evil = await generateKeyPair();
    const { peer, reply } = await startDial(a, a.honest);
    const m3 = await sign(m3Header(a.honest.publicKey), m3Claims({ ...evil, id: a.honest.id as NodeId }, a.target.id, reply), evil.privateKey);
    peer.text(m3);
    await expectClose(peer, [Close.badToken.code, Close.keyMismatch.code]);
    await expectUndisturbed(a, { secrets: [m3] });
  });

  it('`alg: none` is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const m3 = unsigned(m3Header(a.mallory.publicJwk, { alg: 'none' }), m3Claims(a.mallory, a.target.id, reply));
    peer.text(m3);
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it.each([
    ['the raw public key bytes', (x: string) => Buffer.from(x, 'base64url')],
    ['the base64url public key text', (x: string) => Buffer.from(x)],
    ['the public JWK JSON', (x: string) => Buffer.from(JSON.stringify({ crv: 'Ed25519', kty: 'OKP', x }))],
  ])('HS256 signed with %s as the HMAC secret is refused (4006)', async (_what, secretOf) => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const m3 = await sign(m3Header(a.mallory.publicJwk, { alg: 'HS256' }), m3Claims(a.mallory, a.target.id, reply), secretOf(a.mallory.publicJwk.x));
    peer.text(m3);
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('`alg: Ed25519` (the fully specified name, same signature bytes) is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(signRaw(m3Header(a.mallory.publicJwk, { alg: 'Ed25519' }), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('an `iss` other than the hello\'s `from` (the honest peer\'s id) is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { iss: a.honest.id }), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a message 3 without `exp` is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { exp: undefined }), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('an expired message 3 is refused as a clock failure (4007)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const iat = nowS() - 200;
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { iat, exp: iat + 60 }), a.mallory.privateKey));
    await expectClose(peer, Close.clockSkew.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('`iat` in the future beyond clockTolerance is refused (4007) with a reason that names the skew', async () => {
    const a = await arena(); // clockTolerance: 30s by default
    const { peer, reply } = await startDial(a, a.mallory);
    const iat = nowS() + 120;
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { iat, exp: iat + 60 }), a.mallory.privateKey));
    const closed = await expectClose(peer, Close.clockSkew.code);
    expect(skewIn(closed.reason)).toBeGreaterThanOrEqual(118);
    expect(skewIn(closed.reason)).toBeLessThanOrEqual(122);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a message 3 addressed to another node (`aud`) is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { aud: a.honest.id }), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('`aud` as an array that contains the node id is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { aud: [a.target.id, a.honest.id] }), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a message 3 that lives longer than a handshake token may is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const iat = nowS();
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { iat, exp: iat + 86_400 }), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a token of another kind (the listener typ) as message 3 is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk, { typ: Typ.handshakeListener }), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a low-order ephemeral key (all zeros) is refused (4006)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    const hello = makeHello(a.mallory.id, a.target.id, { epk: b64u(Buffer.alloc(32)) });
    peer.text(hello.bytes);
    const reply = await readReply(peer, hello);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a header key that is not a bare public key (carries `d`) is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const d = String(a.mallory.privateKey.export({ format: 'jwk' }).d);
    const header = m3Header(a.mallory.publicJwk);
    header.jwk = { ...(header.jwk as object), d };
    const m3 = await sign(header, m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey);
    peer.text(m3);
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a, { secrets: [d] });
  });

  it('a `crit` header naming an unknown extension is refused (4006)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(signRaw(m3Header(a.mallory.publicJwk, { crit: ['tessera-admin'], 'tessera-admin': true }), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('control: a message 3 signed by hand with node:crypto (no jose) is accepted', async () => {
    const a = await arena();
    const { peer, hello, reply } = await startDial(a, a.mallory);
    const m3 = signRaw(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey);
    peer.text(m3);
    await enterSession(a, await finishAsDialler(peer, hello, reply, m3), a.mallory);
    await expectUndisturbed(a, { secrets: [m3] });
  });

  it('a message 3 over 4096 characters is refused before it is parsed (4001)', async () => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { pad: 'x'.repeat(4096) }), a.mallory.privateKey));
    await expectClose(peer, Close.handshakeInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a hello over 1024 bytes is refused (4001)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    const hello = JSON.parse(makeHello(a.mallory.id, a.target.id).bytes.toString('utf8')) as Record<string, unknown>;
    peer.text(JSON.stringify({ ...hello, pad: 'x'.repeat(1024) }));
    await expectClose(peer, Close.handshakeInvalid.code);
    await expectUndisturbed(a);
  });

  it('a plain HTTP request to the peer port gets 426 and the node keeps serving', async () => {
    const a = await arena();
    const res = await fetch(a.target.url.replace('ws:', 'http:'));
    expect(res.status).toBe(426);
    await res.body?.cancel();
    await expectUndisturbed(a);
  });
});

// ------------------------------------------------------------------ replays

describe('replayed handshakes', () => {
  it('message 3 (and message 1) of an earlier recorded handshake, replayed on a new connection, are refused', async () => {
    const a = await arena();
    // Record an honest handshake, use the session, and leave cleanly.
    const recorded = await honestDial(a.target.url, a.mallory, a.target.id);
    const first = await enterSession(a, recorded, a.mallory);
    recorded.peer.ws.close(1000);
    await waitUntil(() => first.closed, { what: 'the recorded session closed' });
    await expectNoSession(a, a.mallory.id);

    // The whole recording: its hello, then its message 3 after the node's (fresh) message 2.
    const again = await RawPeer.connect(a.target.url);
    again.text(recorded.hello.bytes);
    await again.next();
    again.text(recorded.m3);
    await expectClose(again, [Close.badToken.code, Close.replay.code]);

    // A fresh hello, then the recorded message 3.
    const { peer } = await startDial(a, a.mallory);
    peer.text(recorded.m3);
    await expectClose(peer, [Close.badToken.code, Close.replay.code]);

    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a, { secrets: [recorded.m3] });
  });

  it('a message 3 captured before it was delivered does not work on another connection (nonce and transcript binding)', async () => {
    const a = await arena();
    const captured = await startDial(a, a.mallory);
    const m3 = await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, captured.reply), a.mallory.privateKey);
    captured.peer.ws.terminate(); // never delivered: its jti is unknown to the node

    const { peer } = await startDial(a, a.mallory);
    peer.text(m3);
    await expectClose(peer, Close.badToken.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a, { secrets: [m3] });
  });

  it('a correctly bound message 3 that reuses an accepted jti is refused (4008)', async () => {
    const a = await arena();
    const first = await honestDial(a.target.url, a.mallory, a.target.id);
    const jti = decodeParts(first.m3).claims.jti;
    const session = await enterSession(a, first, a.mallory);
    first.peer.ws.close(1000);
    await waitUntil(() => session.closed);

    const { peer, reply } = await startDial(a, a.mallory);
    peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { jti }), a.mallory.privateKey));
    await expectClose(peer, Close.replay.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });
});

// ------------------------------------------------------------------ one bit flipped

describe('one bit flipped in each handshake message', () => {
  // Message 1 as an on-path attacker changes it: the dialler goes on with its
  // own transcript. Either the node refuses the hello, or the transcripts
  // disagree and it refuses message 3.
  const m1Cases: { what: string; at: (text: string) => BitPosition; code: number; proceeds?: true }[] = [
    { what: 'the message type', at: (t) => flipPositionInValue(t, 'type'), code: Close.handshakeInvalid.code },
    { what: 'the version', at: (t) => ({ index: t.indexOf('"v":1') + 4, bit: 0 }), code: Close.handshakeInvalid.code },
    { what: 'the claimed id (still base64url)', at: (t) => flipPositionInValue(t, 'from'), code: Close.unknownPeer.code },
    { what: 'the claimed id (no longer base64url)', at: (t) => flipPositionInValue(t, 'from', false), code: Close.handshakeInvalid.code },
    { what: 'the listener id (still base64url)', at: (t) => flipPositionInValue(t, 'to'), code: Close.wrongNode.code },
    { what: 'the listener id (no longer base64url)', at: (t) => flipPositionInValue(t, 'to', false), code: Close.handshakeInvalid.code },
    { what: 'the ephemeral key', at: (t) => flipPositionInValue(t, 'epk'), code: Close.badToken.code, proceeds: true },
    { what: 'the nonce', at: (t) => flipPositionInValue(t, 'nonce'), code: Close.badToken.code, proceeds: true },
    { what: 'a brace', at: () => ({ index: 0, bit: 0 }), code: Close.handshakeInvalid.code },
  ];

  it.each(m1Cases)('message 1, in $what: refused ($code)', async ({ at, code, proceeds }) => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    const hello = makeHello(a.mallory.id, a.target.id);
    const { index, bit } = at(hello.bytes.toString('utf8'));
    peer.text(flipBit(hello.bytes, index, bit));
    if (proceeds) {
      const reply = await readReply(peer, hello); // th2 from the dialler's own, unflipped message 1
      peer.text(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    }
    await expectClose(peer, code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  const m3Cases: { what: string; flip: (m3: string) => string; codes: number[] }[] = [
    { what: 'the header key', flip: (m) => flipInJwsMember(m, 0, 'x'), codes: [Close.keyMismatch.code, Close.badToken.code] },
    { what: 'the header typ', flip: (m) => flipInJwsMember(m, 0, 'typ'), codes: [Close.badToken.code] },
    { what: 'the claims (nonce)', flip: (m) => flipInJwsMember(m, 1, 'nonce'), codes: [Close.badToken.code] },
    { what: 'the claims (transcript hash)', flip: (m) => flipInJwsMember(m, 1, 'th'), codes: [Close.badToken.code] },
    { what: 'the signature', flip: (m) => flipInSignature(m), codes: [Close.badToken.code] },
  ];

  it.each(m3Cases)('message 3, in $what: refused', async ({ flip, codes }) => {
    const a = await arena();
    const { peer, reply } = await startDial(a, a.mallory);
    const m3 = flip(await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply), a.mallory.privateKey));
    peer.text(m3);
    await expectClose(peer, codes);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a, { secrets: [m3] });
  });
});

// ------------------------------------------------------------------ the node as dialler, against a hostile listener

describe('a hostile listener against the node as dialler', () => {
  /** A fake listener the target lists (with a url), and the target dialling it; resolves with its hello. */
  async function dialledArena(config: Record<string, unknown> = {}) {
    const fake = await generateKeyPair();
    const listener = await fakeListener();
    const a = await arena(config, [listed('fake', fake, listener.url)]);
    const conn = await listener.nextConnection();
    const m1 = (await conn.next()).data;
    const hello = JSON.parse(m1.toString('utf8')) as Record<string, unknown>;
    expect(hello).toMatchObject({ type: 'hello', from: a.target.id, to: fake.id });
    return { a, fake, listener, conn, m1 };
  }

  it('control: the fake listener\'s honest message 2 gets a session with the dialling node', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    const reply = await listenerReply(fake, m1);
    conn.text(reply.token);
    const m3 = (await conn.next()).data;
    const { header, claims } = decodeParts(m3.toString('utf8'));
    expect(header).toMatchObject({ alg: 'EdDSA', typ: Typ.handshakeDialler, jwk: { x: a.target.publicKey.x } });
    expect(claims).toMatchObject({ iss: a.target.id, aud: fake.id, nonce: reply.snonce, th: b64u(reply.th2) });
    // The node derives its keys from our ephemeral key and th3; we do the same and read its grants.
    const keys = deriveSessionKeys(reply.ephemeral, String(reply.hello.epk), sha256(reply.th2, m3));
    const fromNode = await conn.next();
    expect(decodeMessage(new FrameCipher(keys.d2l).open(fromNode.data)).type).toBe('grants');
    conn.binary(new FrameCipher(keys.l2d).seal(encodeMessage(emptyGrants)));
    await waitUntil(() => ready(a.target.daemon.peerManager.session(fake.id)), { what: 'the node keeps its dialled session with the fake listener' });
    await expectUndisturbed(a);
  });

  const m2Cases: { what: string; flip: (m2: string) => string }[] = [
    { what: 'the header typ', flip: (m) => flipInJwsMember(m, 0, 'typ') },
    { what: 'the claims (dialler nonce)', flip: (m) => flipInJwsMember(m, 1, 'nonce') },
    { what: 'the claims (ephemeral key)', flip: (m) => flipInJwsMember(m, 1, 'epk') },
    { what: 'the signature', flip: (m) => flipInSignature(m) },
  ];

  it.each(m2Cases)('message 2 as seen by the node dialling, in $what: the node refuses (4006) and keeps running', async ({ flip }) => {
    const { a, fake, conn, m1 } = await dialledArena();
    conn.text(flip((await listenerReply(fake, m1)).token));
    await expectRefusedByDialler(a, fake, conn, Close.badToken.code);
  });

  /** The node closed with `codes`, sent nothing after message 1 (no message 3, no frame), keeps no session, and is undisturbed. */
  async function expectRefusedByDialler(a: Arena, fake: KeyPair, conn: RawPeer, codes: number | number[]): Promise<void> {
    await expectClose(conn, codes);
    await expect(conn.next()).rejects.toBeInstanceOf(ClosedError);
    expect(a.target.daemon.peerManager.session(fake.id)).toBeUndefined();
    await expectUndisturbed(a);
  }

  it('message 2 with `alg: none` is refused (4006)', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    conn.text((await listenerReply(fake, m1, { header: { alg: 'none' }, forge: unsigned })).token);
    await expectRefusedByDialler(a, fake, conn, Close.badToken.code);
  });

  it('message 2 signed by a key other than the pinned one is refused (4006)', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    const evil = await generateKeyPair();
    conn.text((await listenerReply(fake, m1, { key: evil.privateKey })).token);
    await expectRefusedByDialler(a, fake, conn, Close.badToken.code);
  });

  it('message 2 with `aud` as an array holding the node id is refused (4006)', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    conn.text((await listenerReply(fake, m1, { claims: { aud: [a.target.id] } })).token);
    await expectRefusedByDialler(a, fake, conn, Close.badToken.code);
  });

  it('an expired message 2 is refused (4007)', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    const iat = nowS() - 300;
    conn.text((await listenerReply(fake, m1, { claims: { iat, exp: iat + 60 } })).token);
    await expectRefusedByDialler(a, fake, conn, Close.clockSkew.code);
  });

  it('message 2 with a low-order ephemeral key is refused (4006) before the node sends message 3', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    conn.text((await listenerReply(fake, m1, { claims: { epk: b64u(Buffer.alloc(32)) } })).token);
    await expectRefusedByDialler(a, fake, conn, Close.badToken.code);
  });

  it('message 2 as a binary frame is refused (4001)', async () => {
    const { a, fake, conn, m1 } = await dialledArena();
    conn.binary(Buffer.from((await listenerReply(fake, m1)).token));
    await expectRefusedByDialler(a, fake, conn, Close.handshakeInvalid.code);
  });

  it('message 2 replayed from an earlier handshake is refused on the next dial (4006 or 4008)', async () => {
    const { a, fake, listener, conn, m1 } = await dialledArena();
    const recorded = await listenerReply(fake, m1);
    conn.text(recorded.token);
    await conn.next(); // the node's message 3: the recorded handshake went through
    conn.ws.close(1000);
    const again = await listener.nextConnection();
    await again.next(); // its new hello
    again.text(recorded.token);
    await expectRefusedByDialler(a, fake, again, [Close.badToken.code, Close.replay.code]);
  });

  it('a listener that stalls after the hello is dropped at the handshake deadline (4002)', async () => {
    const { a, fake, conn } = await dialledArena({ handshakeTimeout: '1s' });
    await expectRefusedByDialler(a, fake, conn, Close.handshakeTimeout.code);
  });

  it('a listener that accepts TCP but never answers the upgrade is abandoned, and the node keeps running', async () => {
    const sockets: { sock: Socket; closed: Promise<unknown> }[] = [];
    const server = createServer((sock) => {
      sock.on('error', () => undefined);
      sock.resume(); // read (and ignore) the upgrade request, so the node's FIN is seen
      sockets.push({ sock, closed: new Promise((resolve) => sock.once('close', resolve)) });
    });
    onTestFinished(() => new Promise<void>((resolve) => {
      for (const { sock } of sockets) sock.destroy();
      server.close(() => resolve());
    }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const silent = await generateKeyPair();
    const a = await arena({ handshakeTimeout: '1s' }, [listed('silent', silent, `ws://127.0.0.1:${(server.address() as AddressInfo).port}`)]);
    const first = await waitUntil(() => sockets[0], { what: 'the node connects' });
    await within(first.closed, 15_000, 'the node never gave up on the silent listener');
    expect(a.target.daemon.peerManager.session(silent.id)).toBeUndefined();
    await expectUndisturbed(a);
  });

  it('a listener that floods the node before authentication is cut off (4003 or destroyed)', async () => {
    const { a, fake, conn } = await dialledArena();
    conn.text('x'.repeat(1024 * 1024));
    await expectRefusedByDialler(a, fake, conn, [Close.preAuthLimit.code, 1006]);
  });
});

// ------------------------------------------------------------------ limits before authentication

describe('bounds before authentication', () => {
  it('a peer that stalls right after the upgrade is closed at the handshake deadline (4002)', async () => {
    const a = await arena({ handshakeTimeout: '1s' });
    const peer = await RawPeer.connect(a.target.url);
    await expectClose(peer, Close.handshakeTimeout.code);
    await expectUndisturbed(a);
  });

  it('a peer that stalls after its hello is closed at the handshake deadline (4002)', async () => {
    const a = await arena({ handshakeTimeout: '1s' });
    const { peer } = await startDial(a, a.mallory);
    await expectClose(peer, Close.handshakeTimeout.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a first frame one byte over maxPreAuthBytes is refused (4003)', async () => {
    const a = await arena(); // maxPreAuthBytes: 64 KiB by default
    const peer = await RawPeer.connect(a.target.url);
    peer.text('x'.repeat(a.target.daemon.config.maxPreAuthBytes + 1));
    await expectClose(peer, Close.preAuthLimit.code);
    await expectUndisturbed(a);
  });

  it('a 1 MiB frame before authentication is refused (4003) or the socket destroyed', async () => {
    const a = await arena({ maxPreAuthBytes: 8192 });
    const peer = await RawPeer.connect(a.target.url);
    peer.binary(randomBytes(1024 * 1024));
    await expectClose(peer, [Close.preAuthLimit.code, 1006]);
    await expectUndisturbed(a);
  });

  it('a frame announced far over the cap is cut off before it completes (4003 or destroyed, not the deadline)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    peer.rawWrite(clientFrameHeader(0x1, 10 * 1024 * 1024)); // 10 MiB text frame, under maxPayload
    peer.rawWrite(Buffer.alloc(2 * a.target.daemon.config.maxPreAuthBytes, 'a'));
    await expectClose(peer, [Close.preAuthLimit.code, 1006]);
    await expectUndisturbed(a);
  });

  it('a garbage binary frame is refused (4001)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    peer.binary(randomBytes(200));
    await expectClose(peer, Close.handshakeInvalid.code);
    await expectUndisturbed(a);
  });

  const notHellos: [string, (a: Arena) => string][] = [
    ['non-JSON text', () => 'hello, tessera {'],
    ['JSON that is not a hello', () => JSON.stringify({ type: 'grants', grants: [], revocations: [] })],
    ['a hello with an extra member', (a) => JSON.stringify({ ...(JSON.parse(makeHello(a.mallory.id, a.target.id).bytes.toString('utf8')) as object), admin: true })],
    ['a JSON array', () => '[1,2,3]'],
    ['JSON null', () => 'null'],
  ];

  it.each(notHellos)('%s as message 1 is refused (4001)', async (_what, text) => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    peer.text(text(a));
    await expectClose(peer, Close.handshakeInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a text frame that is not UTF-8 is refused by the WebSocket layer (1007) or the handshake (4001)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url);
    peer.text(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
    await expectClose(peer, [1007, Close.handshakeInvalid.code]);
    await expectUndisturbed(a);
  });

  it('a connection without the tessera.v1 subprotocol is refused (4001)', async () => {
    const a = await arena();
    const peer = await RawPeer.connect(a.target.url, null);
    await expectClose(peer, Close.handshakeInvalid.code);
    await expectUndisturbed(a);
  });

  it('with maxUnauthenticated 3, a 4th concurrent unauthenticated connection gets 4015; slots come back', async () => {
    const a = await arena({ maxUnauthenticated: 3, maxUnauthenticatedPerAddress: 64 }); // every socket is from 127.0.0.1: the cap on all of them answers
    // Refused handshakes give their slot back.
    for (let i = 0; i < 4; i++) {
      const peer = await RawPeer.connect(a.target.url);
      peer.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
      await expectClose(peer, Close.unknownPeer.code);
    }
    const stalled = [await RawPeer.connect(a.target.url), await RawPeer.connect(a.target.url), await RawPeer.connect(a.target.url)];
    const fourth = await RawPeer.connect(a.target.url);
    expect((await expectClose(fourth, Close.busy.code)).reason).toBe('busy: too many unauthenticated connections; retry: yes');
    await expectUndisturbed(a);
    for (const s of stalled) expect(s.closedWith).toBeUndefined();

    const before = a.target.lines.filter((l) => l.msg === 'peer left during the handshake').length;
    stalled[0]!.ws.terminate();
    await waitUntil(() => a.target.lines.filter((l) => l.msg === 'peer left during the handshake').length > before, { what: 'the node notices the stalled peer left' });
    const fifth = await RawPeer.connect(a.target.url);
    fifth.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
    await expectClose(fifth, Close.unknownPeer.code);
    await expectUndisturbed(a);
  });

  it('with handshakesPerMinute 3, a 4th handshake from the same address within the minute gets 4020', async () => {
    const a = await arena({ handshakesPerMinute: 3 });
    for (let i = 0; i < 3; i++) {
      const peer = await RawPeer.connect(a.target.url);
      peer.text(makeHello((await generateKeyPair()).id, a.target.id).bytes);
      await expectClose(peer, Close.unknownPeer.code);
    }
    const fourth = await RawPeer.connect(a.target.url);
    await expectClose(fourth, Close.rateLimited.code);
    await expectUndisturbed(a);
  });
});

// ------------------------------------------------------------------ refusals at the upgrade

describe('refusals at the upgrade', () => {
  it('an invalid frame pipelined behind a rate-limited upgrade (4020) escapes no handler', async () => {
    const a = await arena({ handshakesPerMinute: 1 });
    const escaped = captureUncaught();
    await RawPeer.connect(a.target.url); // the one handshake allowed this minute, left stalled
    const port = a.target.daemon.peerAddress.port;
    const { done } = await tcpExchange(port, Buffer.concat([Buffer.from(upgradeRequest(port)), INVALID_FRAME]));
    expect((await done).closeCode).toBe(Close.rateLimited.code);
    expect(escaped.map((e) => e.message)).toEqual([]);
    await expectUndisturbed(a);
  });

  it('an invalid frame pipelined behind a busy upgrade (4015) escapes no handler', async () => {
    const a = await arena({ maxUnauthenticated: 1, maxUnauthenticatedPerAddress: 64 });
    const escaped = captureUncaught();
    await RawPeer.connect(a.target.url); // holds the one unauthenticated slot
    const port = a.target.daemon.peerAddress.port;
    const { done } = await tcpExchange(port, Buffer.concat([Buffer.from(upgradeRequest(port)), INVALID_FRAME]));
    expect((await done).closeCode).toBe(Close.busy.code);
    expect(escaped.map((e) => e.message)).toEqual([]);
    await expectUndisturbed(a);
  });

  it('the real daemon process (tessera start) survives an invalid frame behind a refused upgrade, and so does its honest session', async () => {
    const honest = await testNode('honest');
    const { dir, id } = await nodeDir({ name: 'target', config: { handshakesPerMinute: 1 } });
    const key = await readKeyFile(join(dir, 'identity.json'));
    await writePeers(dir, { peers: [entryFor(honest)], authorities: [] });
    await setPeers(honest, [{ name: 'target', id, publicKey: key.publicJwk, read: ['**'], write: ['**'] }]);
    const node = await spawnNode(dir);
    const honestSide = await waitUntil(() => ready(honest.daemon.peerManager.session(id as NodeId)), { what: 'the spawned node dials the honest one' });
    const port = Number(node.peer.split(':').pop());
    await RawPeer.connect(`ws://127.0.0.1:${port}`);
    const { done } = await tcpExchange(port, Buffer.concat([Buffer.from(upgradeRequest(port)), INVALID_FRAME]));
    expect((await done).closeCode).toBe(Close.rateLimited.code);
    const health = await fetch(`http://${node.api}/healthz`).then(
      (r) => r.status,
      () => `unreachable; daemon exit code ${node.child.exitCode}`,
    );
    expect(health).toBe(200);
    expect(honestSide.closed).toBe(false);
    expect(honest.daemon.peerManager.session(id as NodeId)).toBe(honestSide);
  });

  it('a TCP connection that never completes its upgrade request is dropped near the handshake deadline (1s; allowed 10s)', async () => {
    const a = await arena({ handshakeTimeout: '1s' });
    const port = a.target.daemon.peerAddress.port;
    const { done } = await tcpExchange(port, `GET / HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n`);
    await within(done, 10_000, 'the node still holds a half-sent upgrade request 10 s after its 1 s handshake deadline');
    await expectUndisturbed(a);
  });

  it('a burst of 10 simultaneous connections with maxUnauthenticated 3 admits exactly 3 to the handshake', async () => {
    const a = await arena({ maxUnauthenticated: 3, maxUnauthenticatedPerAddress: 64, handshakeTimeout: '2s' });
    const peers = await Promise.all(Array.from({ length: 10 }, () => RawPeer.connect(a.target.url)));
    const closes = await Promise.all(peers.map((p) => p.closeWithin()));
    expect(closes.map((c) => c.code).sort()).toEqual([...Array(3).fill(Close.handshakeTimeout.code), ...Array(7).fill(Close.busy.code)]);
    for (const c of closes.filter((c) => c.code === Close.busy.code)) expect(c.reason).toBe('busy: too many unauthenticated connections; retry: yes');
    await expectUndisturbed(a);
  });
});

// ------------------------------------------------------------------ after an honest handshake

describe('encrypted frames after an honest handshake by a raw client', () => {
  it('control: the raw client completes the handshake; the node sends grants first and keeps the session', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    expect(s.first.type).toBe('grants');
    await enterSession(a, s, a.mallory);
    await expectUndisturbed(a, { secrets: [s.m3, s.reply.token] });
  });

  it('a tampered encrypted frame (one bit of ciphertext) closes the session with 4016', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    const session = await enterSession(a, s, a.mallory);
    s.peer.binary(flipBit(sealMessage(s), 0));
    await expectClose(s.peer, Close.frameInvalid.code);
    expect(session.closed).toBe(true);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a tampered first frame (before grants) closes with 4016', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    const frame = sealMessage(s);
    s.peer.binary(flipBit(frame, frame.byteLength - 1)); // in the tag
    await expectClose(s.peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a replayed encrypted frame (the same sealed frame twice) closes the session with 4016', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    const frame = sealMessage(s);
    s.peer.binary(frame);
    const session = await waitUntil(() => ready(a.target.daemon.peerManager.session(a.mallory.id)));
    s.peer.binary(frame);
    await expectClose(s.peer, Close.frameInvalid.code);
    expect(session.closed).toBe(true);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('reordered encrypted frames close the session with 4016', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    const f0 = sealMessage(s);
    const f1 = sealMessage(s);
    s.peer.binary(f1);
    s.peer.binary(f0);
    await expectClose(s.peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it.each([
    ['a well-formed empty announce', Buffer.concat([Buffer.from([0x02]), Buffer.from('{"docs":[]}')])],
    ['an unknown type byte', Buffer.concat([Buffer.from([0x7f]), Buffer.from('{}')])],
    ['the reserved type 0x00', Buffer.from([0x00])],
    ['an empty message', Buffer.alloc(0)],
  ])('a first encrypted message that is not `grants` (%s) closes with 4018', async (_what, plaintext) => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    s.peer.binary(s.seal.seal(plaintext));
    await expectClose(s.peer, Close.protocolError.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a frame shorter than its tag closes with 4016', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    await enterSession(a, s, a.mallory);
    s.peer.binary(randomBytes(15));
    await expectClose(s.peer, Close.frameInvalid.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a `grants` message with a malformed body closes with 4018', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    s.peer.binary(s.seal.seal(Buffer.concat([Buffer.from([0x01]), Buffer.from('{"grants":"all"}')])));
    await expectClose(s.peer, Close.protocolError.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a text frame after the handshake closes with 4018', async () => {
    const a = await arena();
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    await enterSession(a, s, a.mallory);
    s.peer.text('{"type":"hello"}');
    await expectClose(s.peer, Close.protocolError.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });

  it('a peer that authenticates but never sends grants is closed at the deadline (4018)', async () => {
    const a = await arena({ handshakeTimeout: '1s' });
    const s = await honestDial(a.target.url, a.mallory, a.target.id);
    await expectClose(s.peer, Close.protocolError.code);
    await expectNoSession(a, a.mallory.id);
    await expectUndisturbed(a);
  });
});

// ------------------------------------------------------------------ clocks

describe('clock skew of a raw dialler (clockTolerance 5s)', () => {
  const cases: { what: string; offset: number; ok: boolean; skew?: [number, number] }[] = [
    { what: 'ahead by 60s', offset: 60, ok: false, skew: [58, 62] },
    { what: 'behind by 200s (message 3 expired)', offset: -200, ok: false, skew: [198, 202] },
    { what: 'ahead by 3s', offset: 3, ok: true },
    { what: 'behind by 20s (still within the token lifetime)', offset: -20, ok: true },
  ];

  it.each(cases)('message 3 issued $what: $ok', async ({ offset, ok, skew }) => {
    const a = await arena({ clockTolerance: '5s' });
    const iat = nowS() + offset;
    const { peer, hello, reply } = await startDial(a, a.mallory);
    const m3 = await sign(m3Header(a.mallory.publicJwk), m3Claims(a.mallory, a.target.id, reply, { iat, exp: iat + 60 }), a.mallory.privateKey);
    peer.text(m3);
    if (ok) {
      const s = await finishAsDialler(peer, hello, reply, m3);
      await enterSession(a, s, a.mallory);
    } else {
      const closed = await expectClose(peer, Close.clockSkew.code);
      expect(skewIn(closed.reason)).toBeGreaterThanOrEqual(skew![0]);
      expect(skewIn(closed.reason)).toBeLessThanOrEqual(skew![1]);
      expect(closed.reason).toMatch(offset > 0 ? /ahead/ : /behind/);
      await expectNoSession(a, a.mallory.id);
    }
    await expectUndisturbed(a);
  });
});
