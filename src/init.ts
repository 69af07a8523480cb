import { mkdir, readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createKeyFile, exists } from './identity/file.js';
import type { KeyPair } from './identity/keys.js';
import { TesseraError, UsageError } from './errors.js';
import { writeFileAtomic } from './util/files.js';

export const IDENTITY_FILE = 'identity.json';
export const CONFIG_FILE = 'tessera.json';
export const DAEMON_FILE = 'daemon.json';
export const STORE_DIR = 'store';

/** The data directory: `--data`, else `$TESSERA_HOME`, else `./.tessera`. */
export function resolveDataDir(flag: string | undefined): string {
  return flag ?? process.env.TESSERA_HOME ?? '.tessera';
}

export interface InitOptions {
  readonly name?: string | undefined;
  readonly listen?: string | undefined;
  readonly api?: string | undefined;
}

/**
 * Creates a node's identity (mode 0600) and tessera.json in `dir`. Refuses
 * to overwrite an existing identity; keeps an existing tessera.json, and
 * refuses flags that it does not already say (they would be ignored).
 */
export async function initDataDir(dir: string, opts: InitOptions = {}): Promise<KeyPair> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const identityPath = join(dir, IDENTITY_FILE);
  if (await exists(identityPath)) throw new TesseraError('ERR_KEY_EXISTS', `${identityPath} already exists; refusing to overwrite this node's identity`);
  const configPath = join(dir, CONFIG_FILE);
  if (await exists(configPath)) {
    const ignored = await flagsNotInConfig(configPath, opts);
    if (ignored.length) throw new UsageError(`${configPath} already exists and does not set ${ignored.map((k) => `${k} ${JSON.stringify(opts[k])}`).join(', ')}: edit it instead of passing ${ignored.map((k) => `--${k}`).join(', ')}`);
  } else {
    const config: Record<string, string> = { name: opts.name ?? hostname() };
    if (opts.listen) config.listen = opts.listen;
    if (opts.api) config.api = opts.api;
    await writeFileAtomic(configPath, JSON.stringify(config, null, 2) + '\n');
  }
  return createKeyFile(identityPath);
}

/** The init flags given that an existing tessera.json does not already set to the same value. */
async function flagsNotInConfig(path: string, opts: InitOptions): Promise<(keyof InitOptions)[]> {
  const given = (['name', 'listen', 'api'] as const).filter((k) => opts[k] !== undefined);
  if (!given.length) return [];
  let config: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'));
    if (parsed && typeof parsed === 'object') config = parsed as Record<string, unknown>;
  } catch {
    // unreadable or not JSON: none of the flags is in it (start reports the file itself)
  }
  return given.filter((k) => config[k] !== opts[k]);
}
