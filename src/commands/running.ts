import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TesseraError } from '../errors.js';
import { readKeyFile } from '../identity/file.js';
import { issueApiToken } from '../tokens/api-token.js';
import { TesseraClient } from '../client/index.js';
import type { DaemonFile } from '../daemon.js';
import { DAEMON_FILE, IDENTITY_FILE } from '../init.js';

/** The running daemon of a data directory, from its daemon.json, or undefined. */
export async function findDaemon(dataDir: string): Promise<DaemonFile | undefined> {
  let text: string;
  try {
    text = await readFile(join(dataDir, DAEMON_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const file = parseDaemonFile(text);
  if (!file) throw new TesseraError('ERR_DAEMON_FILE', `${join(dataDir, DAEMON_FILE)} is not a daemon file Tessera wrote; if no node runs for ${dataDir}, remove it`);
  if (!isAlive(file.pid)) return undefined;
  return file;
}

function parseDaemonFile(text: string): DaemonFile | undefined {
  try {
    const file = JSON.parse(text) as Partial<DaemonFile> | null;
    return file && Number.isSafeInteger(file.pid) && typeof file.api === 'string' ? (file as DaemonFile) : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A client for the node running at `dataDir`, authenticated with a
 * short-lived token the CLI signs with the node's own key.
 */
export async function clientFor(dataDir: string, scopes: readonly string[] = ['read:**']): Promise<TesseraClient> {
  const daemon = await findDaemon(dataDir);
  if (!daemon) throw new TesseraError('ERR_NOT_RUNNING', `no Tessera node is running for ${dataDir} (no live daemon.json)`);
  const identity = await readKeyFile(join(dataDir, IDENTITY_FILE));
  const token = await issueApiToken(identity, { scopes, ttlMs: 60_000 });
  return new TesseraClient({ url: `http://${daemon.api}`, token });
}
