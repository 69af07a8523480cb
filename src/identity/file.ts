import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { ConfigError, TesseraError } from '../errors.js';
import { jsonPath } from '../config/json-path.js';
import { createFileExclusive } from '../util/files.js';
import { exportPrivateJwk, fromPrivateKey, generateKeyPair, importPrivateJwk, type KeyPair } from './keys.js';
import { B64U_32 } from '../types.js';


const IdentityFile = z.strictObject({
  id: z.string(),
  publicKey: z.strictObject({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(B64U_32) }),
  privateKey: z.strictObject({
    kty: z.literal('OKP'),
    crv: z.literal('Ed25519'),
    x: z.string().regex(B64U_32),
    d: z.string().regex(B64U_32),
  }),
});

/**
 * Reads a key file (`identity.json` of a node, or an authority key file),
 * checking that its id is the thumbprint of its key and that the private key
 * matches the public one. Error messages never include key material.
 */
export async function readKeyFile(path: string): Promise<KeyPair> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TesseraError('ERR_KEY_FILE', `${path}: cannot read: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(path, '$', 'not valid JSON');
  }
  const parsed = IdentityFile.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(path, jsonPath(issue.path), 'not a Tessera key file (expected id, publicKey, privateKey)');
  }
  if (parsed.data.privateKey.x !== parsed.data.publicKey.x) throw new ConfigError(path, '$.privateKey.x', 'does not match publicKey.x');
  const pair = await fromPrivateKey(importPrivateJwk(parsed.data.privateKey));
  if (pair.publicJwk.x !== parsed.data.publicKey.x) throw new ConfigError(path, '$.privateKey', 'does not match publicKey');
  if (pair.id !== parsed.data.id) throw new ConfigError(path, '$.id', 'is not the RFC 7638 thumbprint of publicKey');
  return pair;
}

/** Writes a new key file with mode 0600; refuses to overwrite an existing one. */
export async function createKeyFile(path: string): Promise<KeyPair> {
  const refused = () => new TesseraError('ERR_KEY_EXISTS', `${path} already exists; refusing to overwrite a key`);
  if (await exists(path)) throw refused();
  const pair = await generateKeyPair();
  const body = { id: pair.id, publicKey: pair.publicJwk, privateKey: exportPrivateJwk(pair) };
  // Created only if nothing is there at that moment: two commands at once must not both print a key id while one key replaces the other.
  await createFileExclusive(path, JSON.stringify(body, null, 2) + '\n', 0o600).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'EEXIST' ? refused() : err;
  });
  return pair;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
