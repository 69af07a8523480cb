import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Daemon } from '../../src/daemon.js';
import { issueApiToken } from '../../src/tokens/api-token.js';
import { readKeyFile } from '../../src/identity/file.js';
import { startDaemon, writePeers } from './node.js';
import { waitUntil } from './wait.js';

export interface TestNode {
  readonly daemon: Daemon;
  readonly dir: string;
  readonly name: string;
  readonly id: string;
  readonly api: string;
  readonly url: string;
  readonly lines: Record<string, unknown>[];
  readonly publicKey: { kty: 'OKP'; crv: 'Ed25519'; x: string };
  token(scopes?: string[]): Promise<string>;
}

/** Starts a node in this process on port 0 with its own data dir, or again on `dir` (a restart); `now` is its injected clock. */
export async function testNode(name: string, config: Record<string, unknown> = {}, existingDir?: string, opts: { now?: () => number } = {}): Promise<TestNode> {
  const { daemon, dir, lines, api } = await startDaemon({ ...(existingDir ? { dir: existingDir } : { name, config }), ...opts });
  const identity = await readKeyFile(join(dir, 'identity.json'));
  return {
    daemon,
    dir,
    name,
    id: identity.id,
    api,
    url: `ws://127.0.0.1:${daemon.peerAddress.port}`,
    lines,
    publicKey: identity.publicJwk as TestNode['publicKey'],
    token: (scopes = ['read:**', 'write:**']) => issueApiToken(identity, { scopes, ttlMs: 3_600_000 }),
  };
}

export interface Link {
  readonly read?: string[];
  readonly write?: string[];
  /** Whether this node dials the other (gets its url). */
  readonly dial?: boolean;
}

/** A peers-file entry for `other`, as seen from a node. */
export function entryFor(other: TestNode, link: Link = {}): Record<string, unknown> {
  return {
    name: other.name,
    id: other.id,
    publicKey: other.publicKey,
    ...(link.dial === false ? {} : { url: other.url }),
    read: link.read ?? ['**'],
    write: link.write ?? ['**'],
  };
}

/** Writes a node's peers file (by rename, as an editor would) and waits for the reload. */
export async function setPeers(node: TestNode, entries: Record<string, unknown>[], authorities: unknown[] = []): Promise<void> {
  await writePeers(node.dir, { peers: entries, authorities });
  await node.daemon.reload();
}

export async function status(node: TestNode): Promise<{ peers: { id: string; state: string; since: string | null; name: string | null }[] } & Record<string, unknown>> {
  const res = await fetch(`${node.api}/v1/status`, { headers: { authorization: `Bearer ${await node.token()}` } });
  return (await res.json()) as never;
}

export async function peerState(node: TestNode, other: TestNode): Promise<string | undefined> {
  return (await status(node)).peers.find((p) => p.id === other.id)?.state;
}

export async function readJson(path: string): Promise<unknown> {
  return JSON.parse(await readFile(path, 'utf8'));
}

/** Links two nodes as most tests want them: `b` lists `a` without dialling, `a` lists `b` and dials; resolves once both show connected. */
export async function linkPair(a: TestNode, b: TestNode): Promise<void> {
  await setPeers(b, [entryFor(a, { dial: false })]);
  await setPeers(a, [entryFor(b)]);
  await waitUntil(async () => (await peerState(a, b)) === 'connected' && (await peerState(b, a)) === 'connected', { what: `${a.name} and ${b.name} connected` });
}
