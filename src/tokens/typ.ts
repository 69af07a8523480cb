/**
 * Every token kind has its own JWS `typ`, and every verification allow-lists
 * exactly that one, so a token of one kind is never accepted as another.
 */
export const Typ = {
  api: 'tessera-api+jwt',
  handshakeListener: 'tessera-hs-listener+jwt',
  handshakeDialler: 'tessera-hs-dialler+jwt',
  envelope: 'tessera-envelope+jwt',
  grant: 'tessera-grant+jwt',
  revocation: 'tessera-revocation+jwt',
} as const;

/** The one algorithm anything here is signed with (DESIGN.md §1). */
export const ALG = 'EdDSA';

/** Longest compact token accepted before parsing is even attempted. */
export const MAX_TOKEN_BYTES = 16 * 1024;
