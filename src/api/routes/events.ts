import type { Route } from '../server.js';
import { HttpError } from '../http.js';
import type { Docs } from '../../sync/docs.js';
import type { DocName } from '../../types.js';
import type { Vector } from '../../store/records.js';
import { longTimeout } from '../../util/timers.js';

/**
 * `GET /v1/docs/{name}/events`: Server-Sent Events, one `change` event per
 * change of the document (local or replicated), nothing on connect. The
 * stream ends when the token expires.
 */
export function eventsRoute(docs: Docs, now: () => number): Route {
  return {
    method: 'GET',
    docRoute: '/events',
    handler: async ({ req, res, grant, doc }) => {
      if (!grant.covers('read', doc!)) throw new HttpError(403, 'forbidden', 'token has no read scope for this document');
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      const onChange = (changed: DocName, vector: Vector) => {
        if (changed === doc) res.write(`event: change\ndata: ${JSON.stringify({ doc, vector })}\n\n`);
      };
      docs.on('change', onChange);
      const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
      const expiry = longTimeout(() => res.end(), grant.expiresAt - now());
      req.socket.setTimeout(0);
      await new Promise<void>((resolve) => res.once('close', resolve));
      docs.off('change', onChange);
      clearInterval(keepAlive);
      expiry.cancel();
    },
  };
}
