/**
 * Helpers for the cluster-authority and revocation tests (DESIGN.md §2,
 * §10): an authority key, grants and revocations for test nodes, the grants
 * file, restarting a node on its data dir, digests across nodes, and a raw
 * dialler that presents whatever grants a test hands it (so a hand-built
 * token that the grants-file schema would refuse, `alg: none` say, still
 * reaches the listener's admission check).
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { testNode, type TestNode } from './cluster.js';
import { postUpdate } from './docs.js';
import { generateKeyPair, importPublicJwk, type KeyPair } from '../../src/identity/keys.js';
import { issueGrant } from '../../src/tokens/grant.js';
import { issueRevocation } from '../../src/tokens/revocation.js';
import { docHash } from '../../src/trust/trust.js';
import { FrameCipher } from '../../src/protocol/frames.js';
import { SUBPROTOCOL, b64u, deriveSessionKeys, encodeHello, signDiallerToken, transcript, verifyListenerToken, x25519Public } from '../../src/protocol/handshake.js';
import { decodeMessage, encodeMessage, type SessionMessage } from '../../src/protocol/messages.js';
import type { NodeId, PublicJwk } from '../../src/types.js';

export { docHash };

export type Authority = KeyPair & { readonly entry: { name: string; id: string; publicKey: PublicJwk } };

/** A fresh authority key pair and its `authorities` entry. */
export async function authority(name = 'admin'): Promise<Authority> {
  const pair = await generateKeyPair();
  return Object.assign(pair, { entry: { name, id: pair.id, publicKey: pair.publicJwk } });
}

/** A grant signed by `auth` for `node` (its id and key). */
export function grantFor(auth: KeyPair, node: { id: string; publicKey: PublicJwk }, read: string[] = ['**'], write: string[] = ['**'], ttlMs = 3_600_000, now?: number): Promise<string> {
  return issueGrant(auth, { id: node.id as NodeId, publicKey: node.publicKey }, { read, write, ttlMs, ...(now === undefined ? {} : { now }) });
}

/** A revocation of `node` signed by `auth`; `cutoff` maps doc names (hashed here) to `<feed key>: seq`. */
export function revocationOf(auth: KeyPair, node: { id: string }, cutoff?: Record<string, Record<string, number>>): Promise<string> {
  return issueRevocation(auth, node.id as NodeId, cutoff ? hashCutoff(cutoff) : undefined);
}

/** A cutoff keyed by doc names, with the names hashed as DESIGN.md §2 says ("*" kept). */
export function hashCutoff(byName: Record<string, Record<string, number>>): Record<string, Record<string, number>> {
  return Object.fromEntries(Object.entries(byName).map(([doc, feeds]) => [doc === '*' ? '*' : docHash(doc), feeds]));
}

/** Writes a node's grants file and reloads it (as SIGHUP would). */
export async function writeGrants(node: TestNode, grants: string[], revocations: string[] = []): Promise<void> {
  await writeFile(join(node.dir, 'grants.json'), JSON.stringify({ grants, revocations }));
  await node.daemon.reload();
}

/** Starts a daemon in this process on an existing data dir (a restart); stopped when the test ends. */
export function nodeOn(dir: string, name: string): Promise<TestNode> {
  return testNode(name, {}, dir);
}

/** The feed key (`<id>:<feed>`) a node signs its own envelopes under. */
export function feedOf(node: TestNode): string {
  return node.daemon.docs.ownFeed;
}

/** An independent edit (a fresh client) POSTed to a node; asserts it was accepted. */
export async function write(node: TestNode, doc: string, fn: (d: Y.Doc) => void): Promise<Record<string, number>> {
  const d = new Y.Doc({ gc: true });
  const before = Y.encodeStateVector(d);
  d.transact(() => fn(d));
  const res = await postUpdate(node, doc, Y.encodeStateAsUpdate(d, before));
  if (res.status !== 200) throw new Error(`write to ${node.name}/${doc}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.vector as Record<string, number>;
}

export async function digestOf(node: TestNode, doc: string): Promise<string> {
  return node.daemon.docs.digest(doc as never);
}

/** Digests of one document on several nodes, by node name. */
export async function digests(nodes: TestNode[], doc: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of nodes) out[n.name] = await digestOf(n, doc);
  return out;
}

export async function vectorOf(node: TestNode, doc: string): Promise<Record<string, number>> {
  return node.daemon.docs.vector(doc as never);
}

/** Whether a node logged a session of `peer` (any peer if omitted) closing with `code`. */
export function closedWith(node: TestNode, code: number, peer?: string): boolean {
  // Closed inside a session, or refused before the session started (the dialler's log).
  return node.lines.some((l) => (l.msg === 'session closed' || l.msg === 'peer refused us; retrying much later' || l.msg === 'dial failed; retrying') && l.code === code && (peer === undefined || l.peer === peer));
}

/** A compact JWS with `alg: none` and an empty signature, built by hand. */
export function unsecuredJwt(header: Record<string, unknown>, payload: Record<string, unknown>): string {
  const part = (o: Record<string, unknown>) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part(header)}.${part(payload)}.`;
}

export interface GrantDial {
  /** How the node closed the connection. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Session messages the node sent (its grants message first). */
  readonly received: SessionMessage[];
  /** Frames from the node that failed to open or decode (the socket is then dropped). */
  readonly errors: Error[];
}

/**
 * Dials a node as `self` (which the node does not list), completes the real
 * handshake, and presents `grants` in the first encrypted frame.
 */
export async function dialWithGrants(url: string, self: KeyPair, node: { id: string; publicKey: PublicJwk }, grants: string[]): Promise<GrantDial> {
  const ws = new WebSocket(url, SUBPROTOCOL, { perMessageDeflate: false, followRedirects: false });
  onTestFinished(() => ws.terminate());
  ws.on('error', () => undefined);
  const frames: Buffer[] = [];
  let onFrame: ((b: Buffer) => void) | undefined;
  ws.on('message', (data) => (onFrame ? onFrame(data as Buffer) : frames.push(data as Buffer)));
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = async (): Promise<Buffer> => {
    const deadline = Date.now() + 15_000;
    while (!frames.length) {
      if (ws.readyState !== WebSocket.OPEN) throw new Error(`closed during the handshake: ${JSON.stringify(await closed)}`);
      if (Date.now() > deadline) throw new Error('no handshake message within 15s');
      await new Promise((r) => setTimeout(r, 20));
    }
    return frames.shift()!;
  };
  const eph = generateKeyPairSync('x25519');
  const nonce = b64u(randomBytes(32));
  const m1 = encodeHello({ from: self.id, to: node.id as NodeId, epk: x25519Public(eph.publicKey), nonce });
  ws.send(Buffer.from(m1).toString('utf8'));
  const th1 = transcript(undefined, m1);
  const m2 = await next();
  const v = await verifyListenerToken(m2.toString('utf8'), importPublicJwk(node.publicKey), {
    self: self.id,
    now: Date.now(),
    clockToleranceS: 30,
    listener: node.id as NodeId,
    dialerNonce: nonce,
    th1,
  });
  const th2 = transcript(th1, m2);
  const m3 = await signDiallerToken({
    signer: self,
    publicJwk: self.publicJwk,
    audience: node.id as NodeId,
    iat: Math.floor(Date.now() / 1000),
    jti: b64u(randomBytes(16)),
    sessionTtlS: 3600,
    listenerNonce: v.payload.snonce!,
    th2,
  });
  const keys = deriveSessionKeys(eph.privateKey, v.payload.epk!, transcript(th2, Buffer.from(m3)));
  const open = new FrameCipher(keys.l2d);
  const seal = new FrameCipher(keys.d2l);
  const received: SessionMessage[] = [];
  const errors: Error[] = [];
  onFrame = (b) => {
    try {
      received.push(decodeMessage(open.open(b)));
    } catch (err) {
      errors.push(err as Error);
      ws.terminate();
    }
  };
  for (const f of frames.splice(0)) onFrame(f);
  ws.send(m3);
  ws.send(seal.seal(encodeMessage({ type: 'grants', grants, revocations: [] })), { binary: true });
  return { closed, received, errors };
}
