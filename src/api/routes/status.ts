import type { Route } from '../server.js';
import { sendJson } from '../http.js';
import type { ApiGrant } from '../../tokens/api-token.js';

export type PeerState = 'connected' | 'connecting' | 'disconnected' | 'refused' | 'revoked';

/** One peer's line in `/v1/status` (DESIGN.md §7). */
export interface PeerStatus {
  readonly name: string | null;
  readonly id: string;
  readonly url: string | null;
  readonly state: PeerState;
  readonly since: string | null;
}

export interface Alarm {
  readonly doc: string;
  readonly kind: string;
  readonly origins: readonly string[];
  readonly peer: string | null;
}

export interface StatusBody {
  readonly id: string;
  readonly name: string;
  readonly peers: readonly PeerStatus[];
  readonly docs: number;
  readonly pending: number;
  readonly grant: { readonly expiresAt: string } | null;
  readonly alarms: readonly Alarm[];
}

/** `GET /v1/status`: any valid token; alarms filtered to what the token may read. */
export function statusRoute(status: (grant: ApiGrant) => Promise<StatusBody>): Route {
  return {
    method: 'GET',
    path: '/v1/status',
    handler: async ({ res, grant }) => sendJson(res, 200, await status(grant)),
  };
}
