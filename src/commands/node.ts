import { join } from 'node:path';
import { readKeyFile } from '../identity/file.js';
import { initDataDir, IDENTITY_FILE } from '../init.js';
import { loadNodeConfig } from '../config/node-config.js';
import { issueApiToken, scopeProblem, verifyApiToken } from '../tokens/api-token.js';
import { TokenError, UsageError } from '../errors.js';
import { parseDuration, DURATION_HINT } from '../util/duration.js';
import { formatHostPort, isWildcard, parseHostPort } from '../util/address.js';

export async function initCommand(dataDir: string, opts: { name?: string; listen?: string; api?: string }): Promise<string> {
  for (const [flag, value] of [['--listen', opts.listen], ['--api', opts.api]] as const) {
    if (value !== undefined && !parseHostPort(value)) throw new UsageError(`${flag} expects HOST:PORT, got ${JSON.stringify(value)}`);
  }
  // The same rule as tessera.json's "name": a name it would refuse must not be written there.
  if (opts.name !== undefined && (opts.name.length < 1 || opts.name.length > 100)) throw new UsageError('--name expects 1 to 100 characters');
  const pair = await initDataDir(dataDir, opts);
  return pair.id;
}

/** `tessera id --json`: a ready-to-paste peers-file entry. */
export async function idCommand(dataDir: string, asJson: boolean): Promise<string> {
  const pair = await readKeyFile(join(dataDir, IDENTITY_FILE));
  if (!asJson) return pair.id;
  const config = await loadNodeConfig(dataDir);
  const entry: Record<string, unknown> = { name: config.name, id: pair.id, publicKey: pair.publicJwk };
  if (config.listen.port !== 0 && !isWildcard(config.listen.host)) entry.url = `ws://${formatHostPort(config.listen)}`;
  return JSON.stringify(entry);
}

/** Without --ttl a token lives an hour, or apiTokenMaxTtl if that is shorter. */
const DEFAULT_TOKEN_TTL_MS = 3_600_000;

export async function tokenCommand(dataDir: string, opts: { scopes: readonly string[]; ttl?: string }): Promise<string> {
  if (opts.scopes.length === 0) throw new UsageError('at least one --scope is required (read:<glob> or write:<glob>)');
  for (const s of opts.scopes) {
    const problem = scopeProblem(s);
    if (problem) throw new UsageError(problem);
  }
  const asked = opts.ttl === undefined ? undefined : parseDuration(opts.ttl);
  if (opts.ttl !== undefined && (asked === undefined || asked <= 0)) throw new UsageError(`--ttl expects ${DURATION_HINT}`);
  const config = await loadNodeConfig(dataDir);
  if (asked !== undefined && asked > config.apiTokenMaxTtl) throw new UsageError(`--ttl ${opts.ttl} exceeds apiTokenMaxTtl (${config.apiTokenMaxTtl / 1000}s)`);
  const ttlMs = asked ?? Math.min(DEFAULT_TOKEN_TTL_MS, config.apiTokenMaxTtl);
  const pair = await readKeyFile(join(dataDir, IDENTITY_FILE));
  const token = await issueApiToken(pair, { scopes: opts.scopes, ttlMs });
  // What the node checks, checked here: a token it would refuse (too many scopes, too large) is not printed.
  try {
    await verifyApiToken(token, { nodeId: pair.id, publicKey: pair.publicKey, maxTtlMs: config.apiTokenMaxTtl, clockToleranceMs: config.clockTolerance });
  } catch (err) {
    if (err instanceof TokenError) throw new UsageError(`the node would refuse this token: ${err.message}`);
    throw err;
  }
  return token;
}
