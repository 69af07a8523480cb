import { describe, expect, it } from 'vitest';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { diffPeers, EMPTY_PEERS, isEmptyDiff, loadPeers, parsePeers, type PeersConfig } from '../../../src/config/peers.js';
import { exportPrivateJwk, generateKeyPair, type KeyPair } from '../../../src/identity/keys.js';
import { ConfigError } from '../../../src/errors.js';
import { tempDir } from '../../helpers/node.js';

const FILE = '/srv/tessera/node/peers.json';

const self = await generateKeyPair();
const alice = await generateKeyPair();
const bob = await generateKeyPair();
const carol = await generateKeyPair();

function entry(pair: KeyPair, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: `peer-${pair.id.slice(0, 6)}`, id: pair.id, publicKey: { ...pair.publicJwk }, read: ['notes/**'], write: ['notes/**'], ...extra };
}

const docHash = (name: string) => createHash('sha256').update(name, 'utf8').digest('hex');

/** A JSON-path member: `.key` for an identifier, `["key"]` otherwise. */
const prop = (key: string) => (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`);

/** The ConfigError parsePeers throws for `json`, checked to name the file and `jsonPath`. */
function refused(json: unknown, jsonPath: string, because?: RegExp): ConfigError {
  let caught: unknown;
  try {
    parsePeers(FILE, json, self.id);
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${JSON.stringify(json).slice(0, 200)} to be refused`).toBeInstanceOf(ConfigError);
  const err = caught as ConfigError;
  expect(err.code).toBe('ERR_CONFIG');
  expect(err.file).toBe(FILE);
  expect(err.path).toBe(jsonPath);
  expect(err.message.startsWith(`${FILE}: ${jsonPath}: `)).toBe(true);
  if (because) expect(err.message).toMatch(because);
  return err;
}

const one = (e: Record<string, unknown>) => ({ peers: [e] });

describe('peers file: bad input is refused, naming the file and the JSON path', () => {
  it('an id that is not the RFC 7638 thumbprint of publicKey', () => {
    refused(one(entry(alice, { id: bob.id })), '$.peers[0].id', /thumbprint/);
    // Second entry, so the index is right.
    refused({ peers: [entry(alice), entry(bob, { id: carol.id })] }, '$.peers[1].id', /thumbprint/);
  });

  it('an id that is not even a thumbprint-shaped string', () => {
    refused(one(entry(alice, { id: 'alice' })), '$.peers[0].id', /43-character/);
    refused(one(entry(alice, { id: undefined })), '$.peers[0].id');
  });

  it('a JWK carrying a private "d"', () => {
    const err = refused(one(entry(alice, { publicKey: exportPrivateJwk(alice) })), '$.peers[0].publicKey', /private/);
    // The error never echoes the private key it refuses.
    expect(err.message).not.toContain(exportPrivateJwk(alice).d);
  });

  it('an oct (symmetric) key', () => {
    refused(one(entry(alice, { publicKey: { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ' } })), '$.peers[0].publicKey', /kty "oct"/);
  });

  it('an RSA key', () => {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    refused(one(entry(alice, { publicKey: jwk })), '$.peers[0].publicKey', /kty "RSA"/);
  });

  it('another curve: X25519', () => {
    const jwk = generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' });
    expect(jwk).toMatchObject({ kty: 'OKP', crv: 'X25519' });
    refused(one(entry(alice, { publicKey: jwk })), '$.peers[0].publicKey', /crv "X25519"/);
  });

  it('another curve: P-256', () => {
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    refused(one(entry(alice, { publicKey: jwk })), '$.peers[0].publicKey', /kty "EC"/);
    refused(one(entry(alice, { publicKey: { ...jwk, kty: 'OKP' } })), '$.peers[0].publicKey', /crv "P-256"/);
  });

  it('an Ed25519 JWK with a malformed x, or not an object at all', () => {
    refused(one(entry(alice, { publicKey: { kty: 'OKP', crv: 'Ed25519', x: 'short' } })), '$.peers[0].publicKey', /32-byte/);
    refused(one(entry(alice, { publicKey: { kty: 'OKP', crv: 'Ed25519' } })), '$.peers[0].publicKey');
    refused(one(entry(alice, { publicKey: alice.publicJwk.x })), '$.peers[0].publicKey', /JWK object/);
    refused(one(entry(alice, { publicKey: [alice.publicJwk] })), '$.peers[0].publicKey');
  });

  it('an unknown JWK member', () => {
    refused(one(entry(alice, { publicKey: { ...alice.publicJwk, y: 'abc' } })), '$.peers[0].publicKey', /"y"/);
  });

  it('duplicate names', () => {
    refused({ peers: [entry(alice, { name: 'berlin' }), entry(bob, { name: 'berlin' })] }, '$.peers[1].name', /duplicate name "berlin"/);
  });

  it('duplicate ids', () => {
    refused({ peers: [entry(alice, { name: 'a' }), entry(bob, { name: 'b' }), entry(alice, { name: 'c' })] }, '$.peers[2].id', /duplicate id/);
    // Unnamed duplicates too.
    const { name: _a, ...anon } = entry(alice);
    refused({ peers: [anon, anon] }, '$.peers[1].id', /duplicate id/);
  });

  it("an authority whose id is also a peer's (a node holding an authority key could grant itself anything)", () => {
    refused({ peers: [entry(alice), entry(bob)], authorities: [{ name: 'ops', id: bob.id, publicKey: bob.publicJwk }] }, '$.authorities[0].id', /also a peer's id/);
  });

  it("this node's own id listed as a peer", () => {
    refused({ peers: [entry(alice), entry(self)] }, '$.peers[1].id', /own id/);
  });

  it('invalid globs in read and write, naming the glob index', () => {
    refused(one(entry(alice, { read: ['notes/**', 'notes/a**'] })), '$.peers[0].read[1]', /whole segment/);
    refused(one(entry(alice, { write: ['notes//a'] })), '$.peers[0].write[0]', /empty segments/);
    refused(one(entry(alice, { read: [''] })), '$.peers[0].read[0]');
    refused(one(entry(alice, { write: ['notes/?'] })), '$.peers[0].write[0]');
    refused(one(entry(alice, { read: 'notes/**' })), '$.peers[0].read');
  });

  it.each(['http://berlin.example:7400', 'https://berlin.example', 'ftp://x', 'berlin.example:7400', 'not a url', 'ws://', ''])('a url that is not ws:// or wss:// (%j)', (url) => {
    refused(one(entry(alice, { url })), '$.peers[0].url', /ws:\/\/ or wss:\/\//);
  });

  it('an unknown key at top level, naming it', () => {
    refused({ peers: [entry(alice)], authorities: [], pears: [] }, '$.pears', /unknown key "pears"/);
  });

  it('an unknown key inside an entry, naming it', () => {
    refused({ peers: [entry(alice), entry(bob, { permissions: ['read'] })] }, '$.peers[1].permissions', /unknown key "permissions"/);
    refused({ authorities: [{ id: alice.id, publicKey: alice.publicJwk, read: [] }] }, '$.authorities[0].read', /unknown key "read"/);
  });

  it('peers or authorities that are not lists', () => {
    refused({ peers: entry(alice) }, '$.peers');
    refused({ authorities: {} }, '$.authorities');
    refused([entry(alice)], '$');
  });

  describe('revoked', () => {
    const feed = `${alice.id}:feed1`;
    const revoked = (cutoff: unknown, at: unknown = '2025-01-01T00:00:00Z') => one(entry(alice, { revoked: { at, cutoff } }));

    it('a cutoff keyed by a doc hash that is not lowercase hex SHA-256', () => {
      const upper = docHash('notes/a').toUpperCase();
      refused(revoked({ [upper]: { [feed]: 3 } }), `$.peers[0].revoked.cutoff${prop(upper)}`, /lowercase hex SHA-256/);
      refused(revoked({ 'notes/a': { [feed]: 3 } }), '$.peers[0].revoked.cutoff["notes/a"]', /lowercase hex SHA-256/);
      refused(revoked({ [docHash('a').slice(1)]: { [feed]: 3 } }), `$.peers[0].revoked.cutoff${prop(docHash('a').slice(1))}`);
      // A key that is not an identifier is written in brackets, so the path stays unambiguous.
      refused(revoked({ '0abc': { [feed]: 3 } }), '$.peers[0].revoked.cutoff["0abc"]');
    });

    it('"*" together with another key', () => {
      refused(revoked({ '*': {}, [docHash('notes/a')]: { [feed]: 1 } }), '$.peers[0].revoked.cutoff["*"]', /alone/);
    });

    it('a negative or fractional seq', () => {
      const h = docHash('notes/a');
      refused(revoked({ [h]: { [feed]: -1 } }), `$.peers[0].revoked.cutoff${prop(h)}["${feed}"]`);
      refused(revoked({ [h]: { [feed]: 1.5 } }), `$.peers[0].revoked.cutoff${prop(h)}["${feed}"]`);
      refused(revoked({ [h]: { [feed]: '3' } }), `$.peers[0].revoked.cutoff${prop(h)}["${feed}"]`);
    });

    it('a feed key that is not "<origin id>:<feed>"', () => {
      const h = docHash('notes/a');
      refused(revoked({ [h]: { feed1: 1 } }), `$.peers[0].revoked.cutoff${prop(h)}.feed1`, /<origin id>:<feed>/);
    });

    it('a bad "at", a missing cutoff, or an unknown member', () => {
      refused(revoked({ '*': {} }, 'yesterday'), '$.peers[0].revoked.at', /ISO time/);
      refused(one(entry(alice, { revoked: { at: '2025-01-01T00:00:00Z' } })), '$.peers[0].revoked.cutoff');
      refused(one(entry(alice, { revoked: { at: '2025-01-01T00:00:00Z', cutoff: { '*': {} }, by: 'me' } })), '$.peers[0].revoked.by');
    });

    it('accepts a well-formed revocation, "*" alone included', () => {
      const h = docHash('notes/a');
      const ok = parsePeers(FILE, revoked({ [h]: { [feed]: 0 }, [docHash('notes/b')]: { [feed]: 12 } }), self.id);
      expect(ok.peers[0]!.revoked).toEqual({ at: '2025-01-01T00:00:00Z', cutoff: { [h]: { [feed]: 0 }, [docHash('notes/b')]: { [feed]: 12 } } });
      expect(parsePeers(FILE, revoked({ '*': {} }), self.id).peers[0]!.revoked!.cutoff).toEqual({ '*': {} });
    });
  });

  describe('authorities', () => {
    it('an entry whose id is not the thumbprint of its key', () => {
      refused({ authorities: [{ name: 'ops', id: bob.id, publicKey: alice.publicJwk }] }, '$.authorities[0].id', /thumbprint/);
    });

    it('a malformed thumbprint', () => {
      refused({ authorities: [{ id: 'not-a-thumbprint', publicKey: alice.publicJwk }] }, '$.authorities[0].id');
    });

    it('a private key, and duplicates', () => {
      refused({ authorities: [{ id: alice.id, publicKey: exportPrivateJwk(alice) }] }, '$.authorities[0].publicKey', /private/);
      refused({ authorities: [{ id: alice.id, publicKey: alice.publicJwk }, { id: alice.id, publicKey: alice.publicJwk }] }, '$.authorities[1].id', /duplicate id/);
    });

    it('accepts a valid authority', () => {
      const c = parsePeers(FILE, { authorities: [{ name: 'ops', id: carol.id, publicKey: carol.publicJwk }] }, self.id);
      expect(c.authorities).toEqual([{ name: 'ops', id: carol.id, publicKey: carol.publicJwk }]);
    });
  });

  it('an invalid JSON file on disk names the file', async () => {
    const file = join(await tempDir(), 'peers.json');
    await writeFile(file, '{"peers": [}');
    await expect(loadPeers(file, self.id)).rejects.toMatchObject({ code: 'ERR_CONFIG', file, path: '$' });
  });
});

describe('peers file: valid input', () => {
  it('peers.example.json at the repo root loads and validates', async () => {
    const file = resolve(import.meta.dirname, '../../../peers.example.json');
    const c = await loadPeers(file, self.id);
    expect(c.peers.length).toBeGreaterThan(0);
    for (const p of c.peers) {
      expect(p.name).toMatch(/^\w+$/);
      expect(p.url === undefined || /^wss?:\/\/[^/]*\.example(:\d+)?(\/|$)/.test(p.url)).toBe(true);
    }
    // The template shows every documented top-level field.
    expect(Object.keys(JSON.parse(await readFile(file, 'utf8')) as object).sort()).toEqual(['authorities', 'peers']);
  });

  it('defaults: missing lists are empty; a missing file is an empty one', async () => {
    const { read: _r, write: _w, name: _n, ...bare } = entry(alice);
    expect(parsePeers(FILE, { peers: [bare] }, self.id)).toEqual({ peers: [{ id: alice.id, publicKey: alice.publicJwk, read: [], write: [] }], authorities: [] });
    expect(parsePeers(FILE, {}, self.id)).toEqual(EMPTY_PEERS);
    expect(await loadPeers(join(await tempDir(), 'missing.json'), self.id)).toEqual(EMPTY_PEERS);
  });

  it('keeps the public key only, dropping optional JWK metadata', () => {
    const c = parsePeers(FILE, one(entry(alice, { publicKey: { ...alice.publicJwk, alg: 'EdDSA', kid: 'k1', use: 'sig' } })), self.id);
    expect(c.peers[0]!.publicKey).toEqual(alice.publicJwk);
  });

  it('accepts ws:// and wss:// urls', () => {
    const c = parsePeers(FILE, { peers: [entry(alice, { url: 'ws://127.0.0.1:7400' }), entry(bob, { url: 'wss://bob.example/tessera' })] }, self.id);
    expect(c.peers.map((p) => p.url)).toEqual(['ws://127.0.0.1:7400', 'wss://bob.example/tessera']);
  });
});

describe('diffPeers', () => {
  const parse = (json: unknown): PeersConfig => parsePeers(FILE, json, self.id);
  const base = parse({ peers: [entry(alice, { name: 'alice', url: 'ws://alice.example:7400' }), entry(bob, { name: 'bob' })] });

  it('nothing changed, even when an editor reorders keys', () => {
    const reordered = parse({
      authorities: [],
      peers: [
        { write: ['notes/**'], read: ['notes/**'], url: 'ws://alice.example:7400', publicKey: { x: alice.publicJwk.x, crv: 'Ed25519', kty: 'OKP' }, id: alice.id, name: 'alice' },
        entry(bob, { name: 'bob' }),
      ],
    });
    const d = diffPeers(base, reordered);
    expect(isEmptyDiff(d)).toBe(true);
  });

  it('added', () => {
    const next = parse({ peers: [...base.peers, entry(carol, { name: 'carol' })] });
    const d = diffPeers(base, next);
    expect(d.added.map((p) => p.id)).toEqual([carol.id]);
    expect(d).toMatchObject({ removed: [], rekeyed: [], changed: [], authoritiesChanged: false });
    expect(isEmptyDiff(d)).toBe(false);
  });

  it('removed', () => {
    const next = parse({ peers: [base.peers[1]] });
    const d = diffPeers(base, next);
    expect(d.removed.map((p) => p.id)).toEqual([alice.id]);
    expect(d).toMatchObject({ added: [], rekeyed: [], changed: [], authoritiesChanged: false });
  });

  it('rekeyed: same name, new key', () => {
    const next = parse({ peers: [entry(carol, { name: 'alice', url: 'ws://alice.example:7400' }), base.peers[1]] });
    const d = diffPeers(base, next);
    expect(d.rekeyed).toHaveLength(1);
    expect(d.rekeyed[0]!.before.id).toBe(alice.id);
    expect(d.rekeyed[0]!.after.id).toBe(carol.id);
    expect(d).toMatchObject({ added: [], removed: [], changed: [], authoritiesChanged: false });
  });

  it('a new key under a new name is a removal and an addition, not a re-key', () => {
    const next = parse({ peers: [entry(carol, { name: 'carol' }), base.peers[1]] });
    const d = diffPeers(base, next);
    expect(d.rekeyed).toEqual([]);
    expect(d.removed.map((p) => p.id)).toEqual([alice.id]);
    expect(d.added.map((p) => p.id)).toEqual([carol.id]);
  });

  it('changed: permissions narrowed', () => {
    const next = parse({ peers: [{ ...base.peers[0], read: ['notes/public/*'], write: [] }, base.peers[1]] });
    const d = diffPeers(base, next);
    expect(d.changed).toHaveLength(1);
    expect(d.changed[0]!.before.read).toEqual(['notes/**']);
    expect(d.changed[0]!.after).toMatchObject({ id: alice.id, read: ['notes/public/*'], write: [] });
    expect(d).toMatchObject({ added: [], removed: [], rekeyed: [], authoritiesChanged: false });
  });

  it('changed: url changed, or url dropped', () => {
    const moved = diffPeers(base, parse({ peers: [{ ...base.peers[0], url: 'wss://alice.example' }, base.peers[1]] }));
    expect(moved.changed.map((c) => [c.before.url, c.after.url])).toEqual([['ws://alice.example:7400', 'wss://alice.example']]);
    const { url: _u, ...noUrl } = base.peers[0]!;
    const dropped = diffPeers(base, parse({ peers: [noUrl, base.peers[1]] }));
    expect(dropped.changed).toHaveLength(1);
    expect(dropped.changed[0]!.after.url).toBeUndefined();
  });

  it('changed: revoked added', () => {
    const next = parse({ peers: [base.peers[0], { ...base.peers[1], revoked: { at: '2025-01-01T00:00:00Z', cutoff: { '*': {} } } }] });
    const d = diffPeers(base, next);
    expect(d.changed).toHaveLength(1);
    expect(d.changed[0]!.before.revoked).toBeUndefined();
    expect(d.changed[0]!.after).toMatchObject({ id: bob.id, revoked: { cutoff: { '*': {} } } });
    expect(d).toMatchObject({ added: [], removed: [], rekeyed: [] });
  });

  it('changed: renamed (same id)', () => {
    const d = diffPeers(base, parse({ peers: [{ ...base.peers[0], name: 'alicia' }, base.peers[1]] }));
    expect(d.changed.map((c) => [c.before.name, c.after.name])).toEqual([['alice', 'alicia']]);
    expect(d.rekeyed).toEqual([]);
  });

  it('authoritiesChanged', () => {
    const withAuth = parse({ peers: base.peers, authorities: [{ name: 'ops', id: carol.id, publicKey: carol.publicJwk }] });
    const d = diffPeers(base, withAuth);
    expect(d.authoritiesChanged).toBe(true);
    expect(d).toMatchObject({ added: [], removed: [], rekeyed: [], changed: [] });
    expect(diffPeers(withAuth, base).authoritiesChanged).toBe(true);
    expect(diffPeers(withAuth, withAuth).authoritiesChanged).toBe(false);
  });

  it('several changes at once are all reported', async () => {
    const dave = await generateKeyPair();
    // alice re-keyed to carol's key, bob narrowed, dave added.
    const next = parse({ peers: [entry(carol, { name: 'alice' }), { ...base.peers[1], write: [] }, entry(dave, { name: 'dave' })] });
    const d = diffPeers(base, next);
    expect(d.rekeyed.map((r) => [r.before.id, r.after.id])).toEqual([[alice.id, carol.id]]);
    expect(d.changed.map((c) => c.after.id)).toEqual([bob.id]);
    expect(d.added.map((p) => p.id)).toEqual([dave.id]);
    expect(d.removed).toEqual([]);
  });
});
