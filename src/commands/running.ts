import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError, TesseraError } from '../errors.js';
import { readKeyFile } from '../identity/file.js';
import { issueApiToken } from '../tokens/api-token.js';
import { TesseraClient } from '../client/index.js';
import type { DaemonFile } from '../daemon.js';
import { DAEMON_FILE, IDENTITY_FILE } from '../init.js';
import { formatHostPort, isLoopbackName, isWildcard, parseHostPort } from '../util/address.js';

/** How long the CLI waits for the running node's `/healthz`. */
const PROBE_TIMEOUT_MS = 5_000;
/** How a probe fails when no node holds the address any more. */
const GONE = new Set(['ECONNREFUSED', 'ECONNRESET', 'TimeoutError']);

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
 * The base URL of the daemon's API, on loopback only: the CLI's token must
 * not cross a network in clear. A wildcard bind is reached through
 * loopback; any other address (or one a daemon.json written by Tessera
 * would not hold) is refused.
 */
function loopbackBase(daemon: DaemonFile, file: string): string {
  const address = parseHostPort(daemon.api);
  if (!address || address.port === 0) throw new ConfigError(file, '$.api', 'is not a HOST:PORT address Tessera writes; if no node runs for this data directory, remove that file');
  if (isWildcard(address.host)) return `http://${formatHostPort({ host: address.host.includes(':') ? '::1' : '127.0.0.1', port: address.port })}`;
  if (isIP(address.host) === 0 || !isLoopbackName(address.host)) {
    throw new ConfigError(file, '$.api', `${daemon.api} is not a loopback address, and the CLI sends its token to loopback only (set "api" in tessera.json to 127.0.0.1:PORT)`);
  }
  return `http://${formatHostPort(address)}`;
}

/**
 * Asks `/healthz` (no token) whether a Tessera API answers at `base`, so
 * that a daemon.json left by a killed node, whose pid and port now belong
 * to some other program, gets no token and a message saying what to do.
 */
async function probe(base: string, daemon: DaemonFile, file: string): Promise<void> {
  let problem: string;
  try {
    const res = await fetch(`${base}/healthz`, { redirect: 'error', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const body: unknown = res.ok ? await res.json().catch(() => undefined) : undefined;
    if ((body as { ok?: unknown } | undefined)?.ok === true) return;
    problem = `something else answers there (HTTP ${res.status})`;
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? (err as Error).name;
    // Anything else (fetch refusing the port, say) is no sign that the node is gone.
    if (!GONE.has(code)) throw new TesseraError('ERR_UNREACHABLE', `cannot reach the Tessera API at ${daemon.api}: ${cause?.message ?? (err as Error).message}`);
    problem = `nothing answers there (${code})`;
  }
  throw new TesseraError('ERR_NOT_RUNNING', `${file} names pid ${daemon.pid} and the API ${daemon.api}, but ${problem}; if no node runs for this data directory, remove that file`);
}

/**
 * A client for the node running at `dataDir`, authenticated with a
 * short-lived token the CLI signs with the node's own key, once its API
 * answers on loopback.
 */
export async function clientFor(dataDir: string, scopes: readonly string[] = ['read:**']): Promise<TesseraClient> {
  const daemon = await findDaemon(dataDir);
  if (!daemon) throw new TesseraError('ERR_NOT_RUNNING', `no Tessera node is running for ${dataDir} (no live daemon.json)`);
  const file = join(dataDir, DAEMON_FILE);
  const base = loopbackBase(daemon, file);
  await probe(base, daemon, file);
  const identity = await readKeyFile(join(dataDir, IDENTITY_FILE));
  const token = await issueApiToken(identity, { scopes, ttlMs: 60_000 });
  return new TesseraClient({ url: base, token });
}
