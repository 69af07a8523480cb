import { Close, PeerRefusal } from './close-codes.js';

/**
 * Session messages: the plaintext of each encrypted frame is one message,
 * a type byte then its body (PROTOCOL.md §3). This module is the only code
 * that touches their bytes.
 */
export const MessageType = {
  grants: 0x01,
} as const;

/** The first message each way, and later refreshes: grants and authority revocations (DESIGN.md §3, §10). */
export interface GrantsMessage {
  readonly type: 'grants';
  readonly grants: readonly string[];
  readonly revocations: readonly string[];
}

export type SessionMessage = GrantsMessage;

const MAX_GRANT_ITEMS = 256;
const MAX_TOKEN = 16 * 1024;

export function encodeMessage(msg: SessionMessage): Uint8Array {
  switch (msg.type) {
    case 'grants':
      return withType(MessageType.grants, Buffer.from(JSON.stringify({ grants: msg.grants, revocations: msg.revocations })));
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
