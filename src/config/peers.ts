import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { thumbprint } from '../identity/keys.js';
import { type NodeId, type PublicJwk, B64U_32 } from '../types.js';
import { globProblem } from './glob.js';
import { firstIssue } from './json-path.js';
import { parseJson } from './node-config.js';

/** Per revoked node: doc hash (or "*") → `<iss>:<feed>` → last seq kept. */
export type Cutoff = Readonly<Record<string, Readonly<Record<string, number>>>>;

export interface Revoked {
  readonly at: string;
  readonly cutoff: Cutoff;
}

export interface PeerEntry {
  readonly name?: string;
  readonly id: NodeId;
  readonly publicKey: PublicJwk;
  readonly url?: string;
  readonly read: readonly string[];
  readonly write: readonly string[];
  readonly revoked?: Revoked;
}

export interface AuthorityEntry {
  readonly name?: string;
  readonly id: NodeId;
  readonly publicKey: PublicJwk;
}

export interface PeersConfig {
  readonly peers: readonly PeerEntry[];
  readonly authorities: readonly AuthorityEntry[];
}

const DOC_HASH = /^[0-9a-f]{64}$/;
const FEED_KEY = /^[A-Za-z0-9_-]{43}:[A-Za-z0-9_-]{1,64}$/;

/**
 * An Ed25519 public JWK. Checked member by member first so the error says
 * what kind of key was given instead of a generic mismatch.
 */
const publicKey = z
  .unknown()
  .superRefine((v, ctx) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return void ctx.addIssue({ code: 'custom', message: 'expected a JWK object' });
    const k = v as Record<string, unknown>;
    if ('d' in k) return void ctx.addIssue({ code: 'custom', message: 'holds private key material ("d"); a peers file takes public keys only' });
    if (k.kty !== 'OKP') return void ctx.addIssue({ code: 'custom', message: `kty ${JSON.stringify(k.kty)} is not accepted: Tessera keys are Ed25519 (kty "OKP", crv "Ed25519")` });
    if (k.crv !== 'Ed25519') return void ctx.addIssue({ code: 'custom', message: `crv ${JSON.stringify(k.crv)} is not accepted: Tessera keys are Ed25519` });
    if (typeof k.x !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(k.x)) return void ctx.addIssue({ code: 'custom', message: 'x must be a 32-byte base64url Ed25519 public key' });
    // The id is a hash of x as written: a second spelling of the same key would be a second id for one node.
    if (!B64U_32.test(k.x)) return void ctx.addIssue({ code: 'custom', message: 'x is not canonical base64url (its last character carries stray bits); copy the key from "tessera id --json"' });
    const extra = Object.keys(k).filter((key) => !['kty', 'crv', 'x', 'alg', 'kid', 'use'].includes(key));
    if (extra.length) ctx.addIssue({ code: 'custom', message: `unknown JWK member "${extra[0]}"` });
  })
  .transform((v) => {
    const k = v as { x: string };
    return { kty: 'OKP', crv: 'Ed25519', x: k.x } as PublicJwk;
  });

const glob = z.string().superRefine((g, ctx) => {
  const problem = globProblem(g);
  if (problem) ctx.addIssue({ code: 'custom', message: `invalid glob ${JSON.stringify(g)}: ${problem}` });
});

/** Why a peer URL cannot be dialled as written, or undefined. */
function urlProblem(u: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(u);
  } catch {
    return 'url must be a ws:// or wss:// URL';
  }
  if ((parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') || parsed.hostname === '') return 'url must be a ws:// or wss:// URL';
  // Peers prove who they are by key; a password here would be sent to whoever answers and shown in /v1/status.
  if (parsed.username !== '' || parsed.password !== '') return 'url must not carry a user name or password (peers authenticate by key)';
  if (u.includes('#')) return 'url must not have a #fragment (a WebSocket URL cannot)';
  return undefined;
}

const url = z.string().superRefine((u, ctx) => {
  const problem = urlProblem(u);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

const cutoff = z
  .record(z.string(), z.record(z.string().regex(FEED_KEY, 'expected "<origin id>:<feed>"'), z.number().int().min(0)))
  .superRefine((c, ctx) => {
    const keys = Object.keys(c);
    for (const k of keys) {
      if (k !== '*' && !DOC_HASH.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: 'a cutoff key is a lowercase hex SHA-256 of a document name, or "*"' });
    }
    if (keys.includes('*') && keys.length > 1) ctx.addIssue({ code: 'custom', path: ['*'], message: '"*" may only stand alone in a cutoff' });
  });

export const RevokedSchema = z.strictObject({
  at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), { message: 'expected an ISO time' }),
  cutoff,
});

const nodeId = z.string().regex(B64U_32, 'a node id is a 43-character base64url thumbprint');
/** The name of a peer or an authority entry. */
export const EntryName = z.string().min(1).max(100);

const PeerSchema = z.strictObject({
  name: EntryName.optional(),
  id: nodeId,
  publicKey,
  url: url.optional(),
  read: z.array(glob).default([]),
  write: z.array(glob).default([]),
  revoked: RevokedSchema.optional(),
});

const AuthoritySchema = z.strictObject({ name: EntryName.optional(), id: nodeId, publicKey });

const PeersFileSchema = z.strictObject({
  peers: z.array(PeerSchema).default([]),
  authorities: z.array(AuthoritySchema).default([]),
});

/** An empty peers file: what a missing one means. */
export const EMPTY_PEERS: PeersConfig = { peers: [], authorities: [] };

/**
 * Validates a parsed peers file: the schema, then the rules across entries
 * (self-certifying ids, unique names and ids, not listing this node).
 */
export function parsePeers(file: string, json: unknown, selfId: NodeId): PeersConfig {
  const parsed = PeersFileSchema.safeParse(json);
  if (!parsed.success) {
    const { path, problem } = firstIssue(parsed.error);
    throw new ConfigError(file, path, problem);
  }
  const { peers, authorities } = parsed.data;
  checkEntries(file, 'peers', peers, selfId);
  checkEntries(file, 'authorities', authorities, selfId);
  // An authority key is the admin's, never a node's: a node whose key were also an authority could grant itself anything.
  const nodes = new Set(peers.map((p) => p.id));
  authorities.forEach((a, i) => {
    if (nodes.has(a.id)) throw new ConfigError(file, `$.authorities[${i}].id`, `is also a peer's id (${a.id}); an authority key must be the admin's own, never a node's`);
  });
  return {
    peers: peers.map((p) => ({ ...p, id: p.id as NodeId })),
    authorities: authorities.map((a) => ({ ...a, id: a.id as NodeId })),
  };
}

function checkEntries(file: string, list: string, entries: readonly { id: string; name?: string | undefined; publicKey: PublicJwk }[], selfId: NodeId): void {
  const ids = new Set<string>();
  const names = new Set<string>();
  entries.forEach((e, i) => {
    const at = `$.${list}[${i}]`;
    if (thumbprint(e.publicKey) !== e.id) throw new ConfigError(file, `${at}.id`, 'is not the RFC 7638 thumbprint of publicKey');
    if (e.id === selfId) throw new ConfigError(file, `${at}.id`, "is this node's own id; a node does not list itself");
    if (ids.has(e.id)) throw new ConfigError(file, `${at}.id`, `duplicate id ${e.id}`);
    ids.add(e.id);
    if (e.name !== undefined) {
      if (names.has(e.name)) throw new ConfigError(file, `${at}.name`, `duplicate name "${e.name}"`);
      names.add(e.name);
    }
  });
}

/** Reads and validates a peers file; a missing file is an empty one. */
export async function loadPeers(file: string, selfId: NodeId): Promise<PeersConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_PEERS;
    throw new ConfigError(file, '$', `cannot read: ${(err as NodeJS.ErrnoException).code}`);
  }
  return parsePeers(file, parseJson(file, text), selfId);
}

/** What changed between two valid peers files, for the session layer. */
export interface PeersDiff {
  readonly added: readonly PeerEntry[];
  readonly removed: readonly PeerEntry[];
  /** Same name, new id: the old id is gone and the new one is in. */
  readonly rekeyed: readonly { readonly before: PeerEntry; readonly after: PeerEntry }[];
  /** Same id; url, name, read, write or revoked changed. */
  readonly changed: readonly { readonly before: PeerEntry; readonly after: PeerEntry }[];
  readonly authoritiesChanged: boolean;
}

export function diffPeers(before: PeersConfig, after: PeersConfig): PeersDiff {
  const oldById = new Map(before.peers.map((p) => [p.id, p]));
  const newById = new Map(after.peers.map((p) => [p.id, p]));
  const gone = before.peers.filter((p) => !newById.has(p.id));
  const fresh = after.peers.filter((p) => !oldById.has(p.id));
  const rekeyed: { before: PeerEntry; after: PeerEntry }[] = [];
  for (const b of gone) {
    const a = b.name === undefined ? undefined : fresh.find((f) => f.name === b.name);
    if (a) rekeyed.push({ before: b, after: a });
  }
  const rekeyedIds = new Set(rekeyed.flatMap((r) => [r.before.id, r.after.id]));
  const changed = after.peers
    .filter((a) => oldById.has(a.id) && JSON.stringify(oldById.get(a.id)) !== JSON.stringify(a))
    .map((a) => ({ before: oldById.get(a.id)!, after: a }));
  return {
    added: fresh.filter((p) => !rekeyedIds.has(p.id)),
    removed: gone.filter((p) => !rekeyedIds.has(p.id)),
    rekeyed,
    changed,
    authoritiesChanged: JSON.stringify(before.authorities) !== JSON.stringify(after.authorities),
  };
}

export function isEmptyDiff(d: PeersDiff): boolean {
  return !d.added.length && !d.removed.length && !d.rekeyed.length && !d.changed.length && !d.authoritiesChanged;
}
