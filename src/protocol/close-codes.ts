/**
 * Every WebSocket close code Tessera sends to a peer, in one table (the same
 * table is in PROTOCOL.md). `retry` says whether dialling again can help:
 * "yes" (back off normally), "config" (only after an admin changes a config:
 * the dialler backs off up to refusedReconnectMax, and never gives up,
 * because such a close arrives before authentication and could be forged).
 */
export const Close = {
  normal: { code: 1000, name: 'normal', retry: 'yes' },
  goingAway: { code: 1001, name: 'going_away', retry: 'yes' },
  handshakeInvalid: { code: 4001, name: 'handshake_invalid', retry: 'config' },
  handshakeTimeout: { code: 4002, name: 'handshake_timeout', retry: 'yes' },
  preAuthLimit: { code: 4003, name: 'pre_auth_limit', retry: 'yes' },
  unknownPeer: { code: 4004, name: 'unknown_peer', retry: 'config' },
  wrongNode: { code: 4005, name: 'wrong_node', retry: 'config' },
  badToken: { code: 4006, name: 'bad_token', retry: 'config' },
  clockSkew: { code: 4007, name: 'clock_skew', retry: 'yes' },
  replay: { code: 4008, name: 'replay', retry: 'yes' },
  keyMismatch: { code: 4009, name: 'key_mismatch', retry: 'config' },
  peerRemoved: { code: 4010, name: 'peer_removed', retry: 'config' },
  peerRevoked: { code: 4011, name: 'peer_revoked', retry: 'config' },
  sessionExpired: { code: 4012, name: 'session_expired', retry: 'yes' },
  duplicateSession: { code: 4013, name: 'duplicate_session', retry: 'yes' },
  replaced: { code: 4014, name: 'replaced', retry: 'yes' },
  busy: { code: 4015, name: 'busy', retry: 'yes' },
  frameInvalid: { code: 4016, name: 'frame_invalid', retry: 'yes' },
  frameTooLarge: { code: 4017, name: 'frame_too_large', retry: 'yes' },
  protocolError: { code: 4018, name: 'protocol_error', retry: 'yes' },
  grantRequired: { code: 4019, name: 'grant_required', retry: 'config' },
  rateLimited: { code: 4020, name: 'rate_limited', retry: 'yes' },
  slowPeer: { code: 4021, name: 'slow_peer', retry: 'yes' },
  forgery: { code: 4022, name: 'forgery', retry: 'yes' },
  heartbeat: { code: 4023, name: 'heartbeat_timeout', retry: 'yes' },
} as const;

export type CloseKind = (typeof Close)[keyof typeof Close];

const BY_CODE = new Map<number, CloseKind>(Object.values(Close).map((c) => [c.code, c]));

export function closeKind(code: number): CloseKind | undefined {
  return BY_CODE.get(code);
}

/** A close reason: `<name>: <detail>; retry <yes|after config change>`, at most 123 bytes. */
export function closeReason(kind: CloseKind, detail: string): string {
  const tail = kind.retry === 'yes' ? '; retry: yes' : '; retry: after config change';
  let text = `${kind.name}: ${detail}`;
  while (Buffer.byteLength(text + tail) > 123) text = text.slice(0, -1);
  return text + tail;
}

/** A refusal raised while handling a peer; carries the close code to send. */
export class PeerRefusal extends Error {
  readonly kind: CloseKind;
  constructor(kind: CloseKind, detail: string) {
    super(detail);
    this.kind = kind;
  }
  get reason(): string {
    return closeReason(this.kind, this.message);
  }
}

/** The peer closed the connection (with its code and reason) before a session was up. */
export class RemoteClosed extends Error {
  readonly code: number;
  readonly reason: string;
  constructor(code: number, reason: string) {
    super(`closed by peer: ${code}${reason ? ` ${reason}` : ''}`);
    this.code = code;
    this.reason = reason;
  }
}
