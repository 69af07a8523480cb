/** Branded ids: the compiler keeps a doc name from standing where a node id belongs. */
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** RFC 7638 SHA-256 JWK thumbprint of a node's Ed25519 public key, base64url. */
export type NodeId = Brand<string, 'NodeId'>;
/** A validated document name (DESIGN.md §7). */
export type DocName = Brand<string, 'DocName'>;
/** A random feed id; feeds are keyed `<iss>:<feed>` so they belong to their issuer. */
export type FeedId = Brand<string, 'FeedId'>;
/** `<iss>:<feed>`: the key of a feed in vectors and stores. */
export type FeedKey = Brand<string, 'FeedKey'>;

/**
 * 32 bytes in canonical unpadded base64url (node ids, Ed25519 key parts,
 * SHA-256 hashes, nonces): 43 characters, the last of which carries 4 bits
 * (its low 2 bits are zero). Another spelling decodes to the same bytes, and
 * a key spelt two ways would hash to two node ids.
 */
export const B64U_32 = /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/;

/** An Ed25519 public key as a JWK (no private part). */
export interface PublicJwk {
  readonly kty: 'OKP';
  readonly crv: 'Ed25519';
  readonly x: string;
}

export function feedKey(iss: NodeId, feed: FeedId): FeedKey {
  return `${iss}:${feed}` as FeedKey;
}
