import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { NodeId, PublicJwk } from '../types.js';

/** A node's or an authority's Ed25519 key pair, with its self-certifying id. */
export interface KeyPair {
  readonly id: NodeId;
  readonly publicJwk: PublicJwk;
  readonly publicKey: KeyObject;
  readonly privateKey: KeyObject;
}

/**
 * RFC 7638 thumbprint (SHA-256, base64url) of an Ed25519 public JWK: the hash
 * of the required members in lexicographic order, no whitespace.
 */
export function thumbprint(jwk: Pick<PublicJwk, 'x'>): NodeId {
  const canonical = `{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`;
  return createHash('sha256').update(canonical).digest('base64url') as NodeId;
}

export async function generateKeyPair(): Promise<KeyPair> {
  const { privateKey } = generateKeyPairSync('ed25519');
  return fromPrivateKey(privateKey);
}

export async function fromPrivateKey(privateKey: KeyObject): Promise<KeyPair> {
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  const publicJwk: PublicJwk = { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x) };
  return { id: thumbprint(publicJwk), publicJwk, publicKey, privateKey };
}

/** The private JWK (with `d`) for storage in a 0600 file; never log it. */
export function exportPrivateJwk(pair: KeyPair): Record<string, string> {
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { kty: 'OKP', crv: 'Ed25519', x: String(jwk.x), d: String(jwk.d) };
}

export function importPrivateJwk(jwk: { x: string; d: string }): KeyObject {
  return createPrivateKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x, d: jwk.d }, format: 'jwk' });
}

export function importPublicJwk(jwk: PublicJwk): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, format: 'jwk' });
}
