import * as encoding from 'lib0/encoding';
import * as decoding from 'lib0/decoding';
import { Close, PeerRefusal } from './close-codes.js';
import { docNameProblem } from '../config/names.js';

/**
 * Session messages: the plaintext of each encrypted frame is one message,
 * a type byte then its body (PROTOCOL.md §3). This module is the only code
 * that touches their bytes.
 */
export const MessageType = {
  grants: 0x01,
  announce: 0x02,
  want: 0x03,
  envelopes: 0x04,
  notWanted: 0x05,
} as const;

/** The first message each way, and later refreshes: grants and authority revocations (DESIGN.md §3, §10). */
export interface GrantsMessage {
  readonly type: 'grants';
  readonly grants: readonly string[];
  readonly revocations: readonly string[];
}

/** One announced document: its name, a hash of the sender's vector and, for a document the sender has loaded, the digest of its state. */
export type AnnounceEntry = readonly [name: string, vectorHash: string] | readonly [name: string, vectorHash: string, digest: string];

/** Documents the receiver may read, each with a hash of the sender's vector. */
export interface AnnounceMessage {
  readonly type: 'announce';
  readonly docs: readonly AnnounceEntry[];
}

/** The receiver's full vector for each announced document whose hash differs. */
export interface WantMessage {
  readonly type: 'want';
  readonly docs: Readonly<Record<string, Readonly<Record<string, number>>>>;
}

/** Envelopes as signed by their origins: token and update bytes. */
export interface EnvelopesMessage {
  readonly type: 'envelopes';
  readonly items: readonly { readonly token: string; readonly update: Uint8Array }[];
}

/** Feeds of documents the receiver refuses by policy, for the rest of the session. */
export interface NotWantedMessage {
  readonly type: 'notWanted';
  readonly items: readonly (readonly [doc: string, feed: string])[];
}

export type SessionMessage = GrantsMessage | AnnounceMessage | WantMessage | EnvelopesMessage | NotWantedMessage;

/** At most this many tokens in each list of one `grants` message (PROTOCOL.md §5). */
export const MAX_GRANT_ITEMS = 256;
const MAX_TOKEN = 16 * 1024;
/** Characters of tokens a sender puts in one `grants` message: a first frame stays well inside the early-frame cap (1 MiB). */
const GRANTS_MESSAGE_CHARS = 256 * 1024;

/**
 * Grants and revocations as `grants` messages within the protocol's limits
 * (at most 256 tokens per list, about 256 KiB of tokens per message), in
 * order: what comes first goes in the first message. Always at least one
 * message (possibly with empty lists). A token no receiver would accept (over
 * 16 KiB) is left out, so no honest set is ever refused.
 */
export function grantsMessages(grants: readonly string[], revocations: readonly string[]): GrantsMessage[] {
  const out: { type: 'grants'; grants: string[]; revocations: string[] }[] = [];
  let cur = { type: 'grants' as const, grants: [] as string[], revocations: [] as string[] };
  let chars = 0;
  const add = (token: string, list: 'grants' | 'revocations') => {
    if (token.length > MAX_TOKEN) return;
    if (cur[list].length >= MAX_GRANT_ITEMS || (chars + token.length > GRANTS_MESSAGE_CHARS && (cur.grants.length || cur.revocations.length))) {
      out.push(cur);
      cur = { type: 'grants', grants: [], revocations: [] };
      chars = 0;
    }
    cur[list].push(token);
    chars += token.length;
  };
  for (const t of grants) add(t, 'grants');
  for (const t of revocations) add(t, 'revocations');
  out.push(cur);
  return out;
}

export function encodeMessage(msg: SessionMessage): Uint8Array {
  switch (msg.type) {
    case 'grants':
      return withType(MessageType.grants, Buffer.from(JSON.stringify({ grants: msg.grants, revocations: msg.revocations })));
    case 'announce':
      return withType(MessageType.announce, Buffer.from(JSON.stringify({ docs: msg.docs })));
    case 'want':
      return withType(MessageType.want, Buffer.from(JSON.stringify({ docs: msg.docs })));
    case 'notWanted':
      return withType(MessageType.notWanted, Buffer.from(JSON.stringify({ items: msg.items })));
    case 'envelopes': {
      const e = encoding.createEncoder();
      encoding.writeUint8(e, MessageType.envelopes);
      encoding.writeVarUint(e, msg.items.length);
      for (const item of msg.items) {
        encoding.writeVarString(e, item.token);
        encoding.writeVarUint8Array(e, item.update);
      }
      return encoding.toUint8Array(e);
    }
  }
}

function withType(type: number, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.byteLength);
  out[0] = type;
  out.set(body, 1);
  return out;
}

/** Decodes one message; anything malformed is a protocol_error refusal. */
export function decodeMessage(bytes: Uint8Array): SessionMessage {
  if (bytes.byteLength < 1) throw new PeerRefusal(Close.protocolError, 'empty message');
  const body = bytes.subarray(1);
  switch (bytes[0]) {
    case MessageType.grants:
      return decodeGrants(body);
    case MessageType.announce:
      return decodeAnnounce(body);
    case MessageType.want:
      return decodeWant(body);
    case MessageType.envelopes:
      return decodeEnvelopes(body);
    case MessageType.notWanted:
      return decodeNotWanted(body);
    default:
      throw new PeerRefusal(Close.protocolError, `unknown message type ${bytes[0]}`);
  }
}

function decodeGrants(body: Uint8Array): GrantsMessage {
  const v = parseJsonBody(body) as { grants?: unknown; revocations?: unknown };
  const list = (x: unknown, what: string): string[] => {
    if (!Array.isArray(x) || x.length > MAX_GRANT_ITEMS || !x.every((t) => typeof t === 'string' && t.length <= MAX_TOKEN)) {
      throw new PeerRefusal(Close.protocolError, `grants.${what} must be a list of at most ${MAX_GRANT_ITEMS} tokens`);
    }
    return x as string[];
  };
  return { type: 'grants', grants: list(v.grants, 'grants'), revocations: list(v.revocations, 'revocations') };
}

function parseJsonBody(body: Uint8Array): unknown {
  try {
    const v: unknown = JSON.parse(Buffer.from(body).toString('utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v;
  } catch {
    throw new PeerRefusal(Close.protocolError, 'message body is not a JSON object');
  }
}

const VECTOR_KEY = /^[A-Za-z0-9_-]{43}:[A-Za-z0-9_-]{1,64}$/;

function docName(v: unknown, what: string): string {
  if (typeof v !== 'string' || docNameProblem(v)) throw new PeerRefusal(Close.protocolError, `${what}: invalid document name`);
  return v;
}

function decodeAnnounce(body: Uint8Array): AnnounceMessage {
  const v = parseJsonBody(body) as { docs?: unknown };
  if (!Array.isArray(v.docs)) throw new PeerRefusal(Close.protocolError, 'announce.docs must be a list');
  const docs = v.docs.map((d) => {
    if (!Array.isArray(d) || (d.length !== 2 && d.length !== 3) || typeof d[1] !== 'string' || d[1].length > 64 || (d.length === 3 && (typeof d[2] !== 'string' || d[2].length > 64))) {
      throw new PeerRefusal(Close.protocolError, 'announce entries are [name, vectorHash] or [name, vectorHash, digest]');
    }
    return (d.length === 3 ? [docName(d[0], 'announce'), d[1], d[2]] : [docName(d[0], 'announce'), d[1]]) as AnnounceEntry;
  });
  return { type: 'announce', docs };
}

function decodeWant(body: Uint8Array): WantMessage {
  const v = parseJsonBody(body) as { docs?: unknown };
  if (typeof v.docs !== 'object' || v.docs === null || Array.isArray(v.docs)) throw new PeerRefusal(Close.protocolError, 'want.docs must be an object');
  const docs: Record<string, Record<string, number>> = {};
  for (const [name, vector] of Object.entries(v.docs as Record<string, unknown>)) {
    docName(name, 'want');
    if (typeof vector !== 'object' || vector === null || Array.isArray(vector)) throw new PeerRefusal(Close.protocolError, 'want vectors must be objects');
    const clean: Record<string, number> = {};
    for (const [k, seq] of Object.entries(vector as Record<string, unknown>)) {
      if (!VECTOR_KEY.test(k) || !Number.isSafeInteger(seq) || (seq as number) < 0) throw new PeerRefusal(Close.protocolError, 'want vector entries are "<iss>:<feed>": seq');
      clean[k] = seq as number;
    }
    docs[name] = clean;
  }
  return { type: 'want', docs };
}

function decodeNotWanted(body: Uint8Array): NotWantedMessage {
  const v = parseJsonBody(body) as { items?: unknown };
  if (!Array.isArray(v.items)) throw new PeerRefusal(Close.protocolError, 'notWanted.items must be a list');
  const items = v.items.map((i) => {
    if (!Array.isArray(i) || i.length !== 2 || typeof i[1] !== 'string' || !VECTOR_KEY.test(i[1])) throw new PeerRefusal(Close.protocolError, 'notWanted items are [doc, feed]');
    return [docName(i[0], 'notWanted'), i[1]] as const;
  });
  return { type: 'notWanted', items };
}

function decodeEnvelopes(body: Uint8Array): EnvelopesMessage {
  try {
    const d = decoding.createDecoder(body);
    const n = decoding.readVarUint(d);
    if (n > body.byteLength) throw new Error('count too large');
    const items: { token: string; update: Uint8Array }[] = [];
    for (let i = 0; i < n; i++) {
      const token = decoding.readVarString(d);
      const update = decoding.readVarUint8Array(d);
      items.push({ token, update });
    }
    if (d.pos !== body.byteLength) throw new Error('bytes left over');
    return { type: 'envelopes', items };
  } catch (err) {
    throw new PeerRefusal(Close.protocolError, `malformed envelopes message (${(err as Error).message})`);
  }
}
