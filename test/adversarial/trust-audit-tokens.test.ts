/**
 * Audit of the authority tokens as pure functions (DESIGN.md §1, §10): a
 * grant or revocation is held, stored, counted and passed on as its string,
 * so it must have one spelling; its kind is its exact `typ`; and a
 * revocation is permanent and names a node.
 */
import { SignJWT, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, importPublicJwk, type KeyPair } from '../../src/identity/keys.js';
import { issueGrant, peekGrant, verifyGrant } from '../../src/tokens/grant.js';
import { issueRevocation, peekRevocation, verifyRevocation } from '../../src/tokens/revocation.js';
import { Typ } from '../../src/tokens/typ.js';
import type { NodeId } from '../../src/types.js';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Other spellings of the same signature bytes: each decodes to them under jose's base64url on Node 20. */
function respellings(token: string): Record<string, string> {
  const [h, p, s] = token.split('.') as [string, string, string];
  const last = ALPHABET.indexOf(s[85]!);
  return {
    'a trailing space': `${token} `,
    'a newline inside the signature': `${h}.${p}.${s.slice(0, 40)}\n${s.slice(40)}`,
    'a tab inside the signature': `${h}.${p}.${s.slice(0, 10)}\t${s.slice(10)}`,
    'base64 padding': `${token}==`,
    'stray bits in the last character': `${h}.${p}.${s.slice(0, 85)}${ALPHABET[last | 1]}`,
  };
}

const authorityOf = (a: KeyPair) => ({ id: a.id, key: importPublicJwk(a.publicJwk) });

async function fixture() {
  const [admin, node] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const grant = await issueGrant(admin, { id: node.id, publicKey: node.publicJwk }, { read: ['**'], write: ['**'], ttlMs: 3_600_000 });
  const revocation = await issueRevocation(admin, node.id);
  return { admin, node, grant, revocation };
}

describe('a grant or revocation has one spelling', () => {
  it('jose verifies respelt signatures (whitespace, padding, stray bits): the premise of the attack', async () => {
    const { admin, grant } = await fixture();
    for (const variant of Object.values(respellings(grant))) {
      await expect(jwtVerify(variant, importPublicJwk(admin.publicJwk), { algorithms: ['EdDSA'] })).resolves.toBeTruthy();
    }
  });

  it('a respelt grant does not verify and is not shaped like a grant; the genuine one does and is', async () => {
    const { admin, node, grant } = await fixture();
    const opts = { sub: node.id, now: Date.now(), checkExpiry: true };
    await expect(verifyGrant(grant, authorityOf(admin), opts)).resolves.toMatchObject({ sub: node.id });
    expect(peekGrant(grant)).toMatchObject({ sub: node.id });
    for (const [what, variant] of Object.entries(respellings(grant))) {
      await expect(verifyGrant(variant, authorityOf(admin), opts), what).rejects.toMatchObject({ code: 'ERR_GRANT_INVALID' });
      expect(peekGrant(variant), what).toBeUndefined();
    }
  });

  it('a respelt revocation does not verify and is not shaped like a revocation; the genuine one does and is', async () => {
    const { admin, node, revocation } = await fixture();
    await expect(verifyRevocation(revocation, authorityOf(admin))).resolves.toMatchObject({ sub: node.id });
    expect(peekRevocation(revocation)).toMatchObject({ sub: node.id });
    for (const [what, variant] of Object.entries(respellings(revocation))) {
      await expect(verifyRevocation(variant, authorityOf(admin)), what).rejects.toMatchObject({ code: 'ERR_REVOCATION_INVALID' });
      expect(peekRevocation(variant), what).toBeUndefined();
    }
  });
});

/** A token signed by `signer` with any header `typ` and claims. */
function signed(signer: KeyPair, typ: string, claims: Record<string, unknown>): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ }).sign(signer.privateKey);
}

describe('the typ of a grant or revocation is matched exactly', () => {
  // jose compares typ case-insensitively and with or without "application/".
  const spellings = (typ: string) => [`application/${typ}`, typ.toUpperCase()];

  it('a grant', async () => {
    const { admin, node } = await fixture();
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: admin.id, sub: node.id, iat: now, exp: now + 3600, jti: 'j', cnf: { jwk: node.publicJwk }, read: ['**'], write: ['**'] };
    await expect(verifyGrant(await signed(admin, Typ.grant, claims), authorityOf(admin), { sub: node.id, now: Date.now(), checkExpiry: true })).resolves.toBeTruthy();
    for (const typ of spellings(Typ.grant)) {
      await expect(verifyGrant(await signed(admin, typ, claims), authorityOf(admin), { sub: node.id, now: Date.now(), checkExpiry: true }), typ).rejects.toMatchObject({ code: 'ERR_GRANT_INVALID' });
    }
  });

  it('a revocation', async () => {
    const { admin, node } = await fixture();
    const claims = { iss: admin.id, sub: node.id, iat: 1, jti: 'j', at: '2020-01-01T00:00:00.000Z', cutoff: { '*': {} } };
    await expect(verifyRevocation(await signed(admin, Typ.revocation, claims), authorityOf(admin))).resolves.toBeTruthy();
    for (const typ of spellings(Typ.revocation)) {
      await expect(verifyRevocation(await signed(admin, typ, claims), authorityOf(admin)), typ).rejects.toMatchObject({ code: 'ERR_REVOCATION_INVALID' });
    }
  });
});

describe('a revocation is permanent and names a node', () => {
  const base = (admin: KeyPair, sub: string) => ({ iss: admin.id, sub, iat: 1, jti: 'j', at: '2020-01-01T00:00:00.000Z', cutoff: { '*': {} } });

  it('one carrying exp (binding until then, then on no node that restarts) or nbf is invalid, even while jose would take it', async () => {
    const { admin, node } = await fixture();
    const now = Math.floor(Date.now() / 1000);
    for (const extra of [{ exp: now + 3600 }, { nbf: now - 60 }]) {
      const token = await signed(admin, Typ.revocation, { ...base(admin, node.id), ...extra });
      await expect(jwtVerify(token, importPublicJwk(admin.publicJwk), { algorithms: ['EdDSA'] })).resolves.toBeTruthy();
      await expect(verifyRevocation(token, authorityOf(admin)), JSON.stringify(extra)).rejects.toMatchObject({ code: 'ERR_REVOCATION_INVALID' });
    }
  });

  it('one whose sub is not a node id in canonical spelling is invalid', async () => {
    const { admin, node } = await fixture();
    const respelt = node.id.slice(0, 42) + ALPHABET[ALPHABET.indexOf(node.id[42]!) | 1];
    for (const sub of [respelt, 'not-a-node-id', '']) {
      await expect(verifyRevocation(await signed(admin, Typ.revocation, base(admin, sub)), authorityOf(admin)), sub).rejects.toMatchObject({ code: 'ERR_REVOCATION_INVALID' });
    }
    await expect(verifyRevocation(await signed(admin, Typ.revocation, base(admin, node.id as NodeId)), authorityOf(admin))).resolves.toMatchObject({ sub: node.id });
  });
});
