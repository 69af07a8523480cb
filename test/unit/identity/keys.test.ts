import { describe, expect, it } from 'vitest';
import { sign, verify, generateKeyPairSync } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { exportPrivateJwk, fromPrivateKey, generateKeyPair, importPublicJwk, thumbprint } from '../../../src/identity/keys.js';
import { createKeyFile, readKeyFile } from '../../../src/identity/file.js';
import { initDataDir } from '../../../src/init.js';
import { ConfigError, TesseraError } from '../../../src/errors.js';
import { tempDir } from '../../helpers/node.js';

interface KeyFileBody {
  id: string;
  publicKey: { kty: string; crv: string; x: string };
  privateKey: { kty: string; crv: string; x: string; d: string };
}

async function keyFile(): Promise<{ path: string; body: KeyFileBody }> {
  const path = join(await tempDir(), 'identity.json');
  await createKeyFile(path);
  return { path, body: JSON.parse(await readFile(path, 'utf8')) as KeyFileBody };
}

/** Rejects with a ConfigError naming `path` and `jsonPath`, and never carrying the secret `d`. */
async function expectRefused(file: string, jsonPath: string, secret: string): Promise<ConfigError> {
  const err = await readKeyFile(file).then(
    () => expect.fail('readKeyFile accepted a bad key file'),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  const ce = err as ConfigError;
  expect(ce.code).toBe('ERR_CONFIG');
  expect(ce.file).toBe(file);
  expect(ce.path).toBe(jsonPath);
  expect(ce.message).toContain(file);
  expect(ce.message).toContain(jsonPath);
  expectNoSecret(ce, secret);
  return ce;
}

function expectNoSecret(err: unknown, secret: string): void {
  const e = err as Error & { cause?: unknown };
  for (const text of [e.message, e.stack ?? '', String(e), JSON.stringify(e), String(e.cause ?? '')]) {
    expect(text).not.toContain(secret);
  }
}

describe('thumbprint (node id)', () => {
  it('equals jose calculateJwkThumbprint (RFC 7638, SHA-256) for random keys', async () => {
    for (let i = 0; i < 25; i++) {
      const pair = await generateKeyPair();
      const expected = await calculateJwkThumbprint(pair.publicJwk, 'sha256');
      expect(thumbprint(pair.publicJwk)).toBe(expected);
      expect(pair.id).toBe(expected);
      // jose's own JWK export of the same key gives the same thumbprint.
      expect(await calculateJwkThumbprint(await exportJWK(pair.publicKey), 'sha256')).toBe(expected);
    }
  });

  it('matches the RFC 8037 appendix A.3 test vector', () => {
    expect(thumbprint({ x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo' })).toBe('kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k');
  });

  it('is a 43-character base64url string', async () => {
    const pair = await generateKeyPair();
    expect(pair.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('derives the same pair from an existing private key', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const a = await fromPrivateKey(privateKey);
    const b = await fromPrivateKey(privateKey);
    expect(a.id).toBe(b.id);
    expect(a.publicJwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: b.publicJwk.x });
  });
});

describe('key file', () => {
  it('round-trips: what createKeyFile writes, readKeyFile reads back as the same working key pair', async () => {
    const path = join(await tempDir(), 'identity.json');
    const written = await createKeyFile(path);
    const read = await readKeyFile(path);
    expect(read.id).toBe(written.id);
    expect(read.publicJwk).toEqual(written.publicJwk);
    const msg = Buffer.from('tessera');
    const sig = sign(null, msg, read.privateKey);
    expect(verify(null, msg, written.publicKey, sig)).toBe(true);
    expect(verify(null, msg, importPublicJwk(read.publicJwk), sig)).toBe(true);
    expect(exportPrivateJwk(read)).toEqual(exportPrivateJwk(written));
  });

  it('holds exactly id, publicKey and privateKey, with id the thumbprint of publicKey', async () => {
    const { body } = await keyFile();
    expect(Object.keys(body).sort()).toEqual(['id', 'privateKey', 'publicKey']);
    expect(body.id).toBe(await calculateJwkThumbprint(body.publicKey, 'sha256'));
    expect(body.privateKey.x).toBe(body.publicKey.x);
    expect(body.publicKey).not.toHaveProperty('d');
  });

  it('is written with mode 0600', async () => {
    const { path } = await keyFile();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('identity.json from initDataDir is mode 0600', async () => {
    const dir = join(await tempDir(), 'node');
    await initDataDir(dir, { name: 'n' });
    expect((await stat(join(dir, 'identity.json'))).mode & 0o777).toBe(0o600);
  });

  it('refuses to overwrite an existing key file, leaving it intact', async () => {
    const { path } = await keyFile();
    const before = await readFile(path, 'utf8');
    await expect(createKeyFile(path)).rejects.toMatchObject({ code: 'ERR_KEY_EXISTS' });
    expect(await readFile(path, 'utf8')).toBe(before);
  });

  it('refuses a file whose id is not the thumbprint of its key', async () => {
    const { path, body } = await keyFile();
    const other = await generateKeyPair();
    await writeFile(path, JSON.stringify({ ...body, id: other.id }));
    const err = await expectRefused(path, '$.id', body.privateKey.d);
    expect(err.message).toMatch(/thumbprint/);
  });

  it('refuses a file whose private key belongs to another key pair', async () => {
    const { path, body } = await keyFile();
    const other = exportPrivateJwk(await generateKeyPair());
    // Private key of another pair, even with its own consistent x: does not match publicKey.
    await writeFile(path, JSON.stringify({ ...body, privateKey: { ...body.privateKey, x: other.x, d: other.d } }));
    await expectRefused(path, '$.privateKey.x', other.d!);
    // Same x as publicKey, but the d of another pair.
    await writeFile(path, JSON.stringify({ ...body, privateKey: { ...body.privateKey, d: other.d } }));
    await expectRefused(path, '$.privateKey', other.d!);
  });

  it('refuses a private key whose x disagrees with publicKey even when d matches publicKey', async () => {
    const { path, body } = await keyFile();
    const other = await generateKeyPair();
    await writeFile(path, JSON.stringify({ ...body, privateKey: { ...body.privateKey, x: other.publicJwk.x } }));
    await expectRefused(path, '$.privateKey.x', body.privateKey.d);
  });

  it('refuses malformed files without echoing key material', async () => {
    const { path, body } = await keyFile();
    const d = body.privateKey.d;
    const cases: [string, string][] = [
      // Truncated mid-write: JSON.parse messages quote the text around the error, so it must not be passed on.
      [JSON.stringify(body).slice(0, JSON.stringify(body).indexOf(d) + 20), '$'],
      [`{"privateKey": {"d": "${d}"} oops`, '$'],
      [JSON.stringify({ ...body, privateKey: { ...body.privateKey, d: d + 'A' } }), '$.privateKey.d'],
      [JSON.stringify({ ...body, privateKey: { ...body.privateKey, kty: 'oct' } }), '$.privateKey.kty'],
      [JSON.stringify({ ...body, extra: d }), '$'],
      [JSON.stringify({ id: body.id, privateKey: body.privateKey }), '$.publicKey'],
      [JSON.stringify({ ...body, publicKey: { ...body.publicKey, d } }), '$.publicKey'],
      ['[]', '$'],
    ];
    for (const [text, jsonPath] of cases) {
      await writeFile(path, text);
      await expectRefused(path, jsonPath, d);
    }
  });

  it('a missing key file is ERR_KEY_FILE naming the path', async () => {
    const path = join(await tempDir(), 'nope.json');
    const err = await readKeyFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TesseraError);
    expect((err as TesseraError).code).toBe('ERR_KEY_FILE');
    expect((err as TesseraError).message).toContain(path);
  });
});
