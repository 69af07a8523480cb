import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { generateKeyPair, importPublicJwk, thumbprint } from '../../../src/identity/keys.js';
import { issueGrant, verifyGrant } from '../../../src/tokens/grant.js';
import { B64U_32, type NodeId } from '../../../src/types.js';

/** The same 32 bytes spelt with the last character's two stray bits set: decodes alike, hashes to another id. */
function respell(x: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(x[42]!);
  return x.slice(0, 42) + alphabet[last | 1]!;
}

describe('32-byte values are accepted in canonical base64url only', () => {
  it('every canonical encoding matches; a respelling of the same bytes does not', () => {
    for (let i = 0; i < 2000; i++) {
      const x = randomBytes(32).toString('base64url');
      expect(B64U_32.test(x)).toBe(true);
      const other = respell(x);
      expect(Buffer.from(other, 'base64url').equals(Buffer.from(x, 'base64url'))).toBe(true);
      expect(B64U_32.test(other)).toBe(false);
    }
  });

  it('a grant binding a respelt key (another id for the same node key) is invalid, even signed by the authority', async () => {
    const [admin, node] = await Promise.all([generateKeyPair(), generateKeyPair()]);
    const x = respell(node.publicJwk.x);
    // Node's crypto takes the respelt key as the same key: only the check on the spelling stops a second id.
    expect(importPublicJwk({ kty: 'OKP', crv: 'Ed25519', x }).equals(importPublicJwk(node.publicJwk))).toBe(true);
    const sub = thumbprint({ x });
    expect(sub).not.toBe(node.id);
    const grant = await issueGrant(admin, { id: sub, publicKey: { kty: 'OKP', crv: 'Ed25519', x } }, { read: ['**'], write: ['**'], ttlMs: 3_600_000 });
    await expect(verifyGrant(grant, { id: admin.id, key: importPublicJwk(admin.publicJwk) }, { sub: sub as NodeId, now: Date.now(), checkExpiry: true })).rejects.toThrow(/cnf\.jwk/);
    // The canonical spelling is a valid grant.
    const good = await issueGrant(admin, { id: node.id, publicKey: node.publicJwk }, { read: ['**'], write: ['**'], ttlMs: 3_600_000 });
    await expect(verifyGrant(good, { id: admin.id, key: importPublicJwk(admin.publicJwk) }, { sub: node.id, now: Date.now(), checkExpiry: true })).resolves.toMatchObject({ read: ['**'] });
  });
});
