import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as Y from 'yjs';
import type { KeyPair } from '../../src/identity/keys.js';
import { writeFileAtomic } from '../../src/util/files.js';
import { CLI, type BenchNode } from './tessera.js';

/**
 * A node of a soak mesh as bench/soak.ts keeps it: `current` is its live
 * process, which a SIGKILL round replaces; `up` is false in between.
 */
export interface MeshNode {
  readonly name: string;
  readonly dir: string;
  readonly pair: KeyPair;
  current: BenchNode;
  up: boolean;
  /**
   * The loopback address honest peers dial it on (127.0.0.1 unless said):
   * the node under attack listens on both stacks, its attackers come from
   * 127.0.0.1 and its peers from ::1, so that per-address limits tell them apart.
   */
  readonly honestHost?: string;
}

/** `ws://HOST:PORT` of the node's peer listener on the address its honest peers dial. */
export function honestUrl(node: MeshNode): string {
  const port = node.current.peerUrl.split(':').pop()!;
  return node.honestHost === '::1' ? `ws://[::1]:${port}` : `ws://127.0.0.1:${port}`;
}

/** GET a JSON route of the node's current process; undefined on any failure (a node being restarted, say). */
export async function tryJson<T>(node: MeshNode, path: string, timeoutMs = 10_000): Promise<T | undefined> {
  const { api, token } = node.current;
  try {
    const res = await fetch(`${api}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    if (res.status === 200) return (await res.json()) as T;
    await res.arrayBuffer();
    return undefined;
  } catch {
    return undefined;
  }
}

/** POSTs one Yjs update; status 0 when the node could not be reached. */
export async function postUpdate(node: MeshNode, doc: string, update: Uint8Array): Promise<{ status: number; vector: Record<string, number> }> {
  const { api, token } = node.current;
  try {
    const res = await fetch(`${api}/v1/docs/${encodeURIComponent(doc)}/updates`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: update, signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { vector?: Record<string, number> };
    return { status: res.status, vector: body.vector ?? {} };
  } catch {
    return { status: 0, vector: {} };
  }
}

export interface Author {
  readonly origin: string;
  readonly envelopes: number;
  readonly clients: [number, number, number][];
}

/** What the API shows of one document on one node. */
export interface DocView {
  readonly json: { m?: Record<string, unknown> };
  /** SHA-256 of the state as one update (DESIGN.md §4's digest). */
  readonly digest: string;
  /** Yjs client id → clock, from the state. */
  readonly clocks: Map<number, number>;
  readonly authors: readonly Author[];
}

/** The document's JSON, state digest and clocks, and authors; undefined if any read failed. */
export async function viewDoc(node: MeshNode, doc: string): Promise<DocView | undefined> {
  const path = `/v1/docs/${encodeURIComponent(doc)}`;
  const [json, authors, state] = await Promise.all([tryJson<DocView['json']>(node, path), tryJson<{ authors: Author[] }>(node, `${path}/authors`), stateOf(node, doc)]);
  if (!json || !authors || !state) return undefined;
  const clocks = Y.decodeStateVector(Y.encodeStateVectorFromUpdate(state));
  return { json, digest: createHash('sha256').update(state).digest('hex'), clocks, authors: authors.authors };
}

async function stateOf(node: MeshNode, doc: string): Promise<Uint8Array | undefined> {
  const { api, token } = node.current;
  try {
    const res = await fetch(`${api}/v1/docs/${encodeURIComponent(doc)}/state`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
    const bytes = new Uint8Array(await res.arrayBuffer());
    return res.status === 200 ? bytes : undefined;
  } catch {
    return undefined;
  }
}

/** The peers file as the bench edits it. */
export interface PeersFile {
  peers: ({ id: string } & Record<string, unknown>)[];
  authorities: unknown[];
}

/** Rewrites the node's peers file through `edit`, by rename (what the daemon's folder watch expects), and SIGHUPs it if it is up. */
export async function editPeersFile(node: MeshNode, edit: (file: PeersFile) => void): Promise<void> {
  const path = join(node.dir, 'peers.json');
  const file = await readFile(path, 'utf8').then((t) => JSON.parse(t) as PeersFile, () => ({ peers: [], authorities: [] }));
  edit(file);
  await writeFileAtomic(path, JSON.stringify(file, null, 2));
  reload(node);
}

/** SIGHUP: reload the peers and grants files. Not sent while a node restarts (before its handler is installed, SIGHUP would end it). */
export function reload(node: MeshNode): void {
  if (node.up) node.current.server.child.kill('SIGHUP');
}

/** Runs the tessera CLI to completion; its stdout, or a rejection with its stderr. */
export function tessera(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [CLI, ...args], (err, stdout, stderr) => (err ? reject(new Error(`tessera ${args.slice(0, 2).join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout.trim()))),
  );
}

/** A log line that carries a close code: a session closed, or a dial refused. */
export interface CodeLine {
  readonly msg: string;
  readonly peer: string;
  readonly code: number;
}

/** Collects the node's log lines that carry a close code and a peer (from the current process on). */
export function watchCodes(node: MeshNode): CodeLine[] {
  const lines: CodeLine[] = [];
  createInterface({ input: node.current.server.child.stdout! }).on('line', (text) => {
    if (!text.includes('"code"')) return;
    try {
      const l = JSON.parse(text) as Partial<CodeLine>;
      if (typeof l.code === 'number' && typeof l.peer === 'string') lines.push({ msg: String(l.msg), peer: l.peer, code: l.code });
    } catch {
      // not a JSON line
    }
  });
  return lines;
}
