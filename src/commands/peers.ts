import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { readKeyFile } from '../identity/file.js';
import { IDENTITY_FILE } from '../init.js';
import { loadNodeConfig, parseJson } from '../config/node-config.js';
import { parsePeers } from '../config/peers.js';
import { ConfigError, UsageError } from '../errors.js';
import { replaceFile, withFileLock } from './peers-file.js';
import { clientFor, findDaemon } from './running.js';
import { Store } from '../store/store.js';
import { STORE_DIR } from '../init.js';
import { createLogger } from '../log.js';
import { cutoffFromStore } from '../sync/cutoff.js';
import type { Cutoff } from '../config/peers.js';
import type { NodeId } from '../types.js';

type RawPeers = { peers: Record<string, unknown>[]; authorities: unknown[] } & Record<string, unknown>;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads the peers file as plain JSON, checked only as far as an edit needs
 * (an object, with lists of entries), so that `peers remove` can still take
 * out an entry that fails the full validation; the result is validated whole.
 */
async function readRaw(file: string): Promise<RawPeers> {
  let json: unknown;
  try {
    json = parseJson(file, await readFile(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { peers: [], authorities: [] };
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, '$', `cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!isObject(json)) throw new ConfigError(file, '$', 'expected an object { "peers": [...], "authorities": [...] }');
  json.peers ??= [];
  json.authorities ??= [];
  if (!Array.isArray(json.peers)) throw new ConfigError(file, '$.peers', 'expected a list of peer entries');
  if (!Array.isArray(json.authorities)) throw new ConfigError(file, '$.authorities', 'expected a list of authority entries');
  json.peers.forEach((p, i) => {
    if (!isObject(p)) throw new ConfigError(file, `$.peers[${i}]`, 'expected a peer entry (an object)');
  });
  return json as RawPeers;
}

/**
 * Edits the peers file safely: under a lock (two commands at once would
 * each write over the other's change), the whole result is validated as the
 * daemon would, then written to a temp file and renamed over the old one,
 * which the running daemon's folder watch picks up.
 */
async function editPeers(dataDir: string, edit: (raw: RawPeers) => void): Promise<void> {
  const config = await loadNodeConfig(dataDir);
  const self = await readKeyFile(join(dataDir, IDENTITY_FILE));
  await withFileLock(config.peersFile, async () => {
    const raw = await readRaw(config.peersFile);
    edit(raw);
    parsePeers(config.peersFile, raw, self.id);
    await replaceFile(config.peersFile, JSON.stringify(raw, null, 2) + '\n');
  });
}

export async function peersAddCommand(dataDir: string, opts: { entry: string; name?: string; url?: string; read: string[]; write: string[] }): Promise<string> {
  let text: string;
  try {
    text = await readFile(opts.entry, 'utf8');
  } catch (err) {
    throw new UsageError(`--entry ${opts.entry}: cannot read (${(err as NodeJS.ErrnoException).code})`);
  }
  const given = parseJson(opts.entry, text);
  if (typeof given !== 'object' || given === null || Array.isArray(given)) throw new UsageError(`--entry ${opts.entry}: expected the JSON object that "tessera id --json" prints`);
  const src = given as Record<string, unknown>;
  const entry: Record<string, unknown> = { id: src.id, publicKey: src.publicKey };
  const name = opts.name ?? src.name;
  const url = opts.url ?? src.url;
  if (name !== undefined) entry.name = name;
  if (url !== undefined) entry.url = url;
  entry.read = opts.read;
  entry.write = opts.write;
  await editPeers(dataDir, (raw) => {
    if (raw.peers.some((p) => p.id === entry.id)) throw new UsageError(`peer ${String(entry.id)} is already listed; remove it first`);
    raw.peers.push(entry);
  });
  return String(entry.id);
}

export async function peersRemoveCommand(dataDir: string, nameOrId: string): Promise<string> {
  let removed = '';
  await editPeers(dataDir, (raw) => {
    const i = raw.peers.findIndex((p) => p.id === nameOrId || p.name === nameOrId);
    if (i < 0) throw new UsageError(`no peer named or with id ${JSON.stringify(nameOrId)}`);
    removed = String(raw.peers[i]!.id);
    raw.peers.splice(i, 1);
  });
  return removed;
}

/**
 * `tessera peers revoke`: writes the entry's `revoked` with the cutoff of what
 * this node holds (asked of the running node, or read offline) and prints
 * the cutoff, which `tessera revoke --cutoff` accepts.
 */
export async function peersRevokeCommand(dataDir: string, nameOrId: string): Promise<string> {
  // A folder that is no node's says so, rather than that it lists no such peer.
  await readKeyFile(join(dataDir, IDENTITY_FILE));
  const config = await loadNodeConfig(dataDir);
  const raw = await readRaw(config.peersFile);
  const entry = raw.peers.find((p) => p.id === nameOrId || p.name === nameOrId);
  if (!entry) throw new UsageError(`no peer named or with id ${JSON.stringify(nameOrId)}`);
  const id = String(entry.id) as NodeId;
  let cutoff: Cutoff;
  if (await findDaemon(dataDir)) {
    cutoff = await (await clientFor(dataDir)).cutoff(id);
  } else {
    const store = await Store.open(join(dataDir, STORE_DIR), { durability: config.durability, log: createLogger({ level: 'silent' }) });
    try {
      cutoff = await cutoffFromStore(store, id);
    } finally {
      await store.close();
    }
  }
  await editPeers(dataDir, (r) => {
    const e = r.peers.find((p) => p.id === id);
    if (!e) throw new UsageError(`peer ${id} left the peers file while its cutoff was read`);
    e.revoked = { at: new Date().toISOString(), cutoff };
  });
  return JSON.stringify(cutoff);
}
