import type { Route } from '../server.js';
import { statusRoute, type StatusBody } from './status.js';
import { docRoutes, type DocRoutesDeps } from './docs.js';
import { eventsRoute, type EventsOptions } from './events.js';
import { metricsRoute, type MetricsSource } from './metrics.js';
import { HttpError, sendJson } from '../http.js';
import type { ApiGrant } from '../../tokens/api-token.js';
import type { VerifyReport } from '../../sync/verify.js';
import { cutoffFromStore } from '../../sync/cutoff.js';
import { type NodeId, B64U_32 } from '../../types.js';

export interface RouteDeps extends DocRoutesDeps, EventsOptions {
  readonly status: (grant: ApiGrant) => Promise<StatusBody>;
  readonly verify: () => Promise<VerifyReport>;
  readonly metrics: MetricsSource;
  readonly now: () => number;
}

/** Every HTTP route of the local API (DESIGN.md §7). */
export function apiRoutes(deps: RouteDeps): Route[] {
  return [
    statusRoute(deps.status),
    ...docRoutes(deps),
    eventsRoute(deps.docs, deps.now, deps),
    metricsRoute(deps.metrics),
    {
      method: 'GET',
      path: '/v1/verify',
      handler: async ({ res, grant }) => {
        if (!grant.scopes.includes('read:**')) throw new HttpError(403, 'forbidden', 'verify needs a read:** token');
        // A store reopened (or closing) under the check is a 503 to retry, as for every route.
        sendJson(res, 200, await deps.verify());
      },
    },
    {
      method: 'GET',
      path: '/v1/cutoff',
      handler: async ({ res, grant, url }) => {
        if (!grant.scopes.includes('read:**')) throw new HttpError(403, 'forbidden', 'cutoffs need a read:** token');
        const node = url.searchParams.get('node') ?? '';
        if (!B64U_32.test(node)) throw new HttpError(400, 'bad_node', 'node must be a node id');
        sendJson(res, 200, { cutoff: await cutoffFromStore(deps.store, node as NodeId) });
      },
    },
  ];
}
