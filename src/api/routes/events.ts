import type { Route } from '../server.js';
import { HttpError } from '../http.js';
import type { Docs } from '../../sync/docs.js';
import type { DocName } from '../../types.js';
import type { Vector } from '../../store/records.js';
import type { Logger } from 'pino';
import { longTimeout } from '../../util/timers.js';
import type { AppConnections } from '../app-connections.js';

export interface EventsOptions {
  /** Bytes of events left unsent to one client before its stream is cut (the config's maxQueuedBytes; an event is well under 1 KiB). */
  readonly maxQueuedBytes: number;
  readonly log: Logger;
  /** The bound on open app connections, shared with the WebSockets: beyond it, 503 before the stream starts. */
  readonly connections: AppConnections;
}

/**
 * `GET /v1/docs/{name}/events`: Server-Sent Events, one `change` event per
 * change of the document (local or replicated), nothing on connect. The
 * stream ends when the token expires, and is cut when its client stops
 * reading. It holds one of the app connection slots while it is open.
 */
export function eventsRoute(docs: Docs, now: () => number, opts: EventsOptions): Route {
  const maxQueued = opts.maxQueuedBytes;
  return {
    method: 'GET',
    docRoute: '/events',
    handler: async ({ req, res, grant, doc }) => {
      if (!grant.covers('read', doc!)) throw new HttpError(403, 'forbidden', 'token has no read scope for this document');
      // A client that left while its token was checked: its 'close' is already gone, and nothing would end this handler.
      if (res.closed) return;
      res.once('close', opts.connections.take(grant.id));
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      const send = (text: string) => {
        // The expiry timer is a backstop: Node's timers stop while the machine sleeps, the clock does not.
        if (now() >= grant.expiresAt) return void res.end();
        // A client that stops reading does not make the node hold every later change for it.
        if (res.writableLength > maxQueued) {
          opts.log.warn({ doc, queued: res.writableLength }, 'app too slow to read its event stream: dropped');
          return void res.destroy();
        }
        res.write(text);
      };
      const onChange = (changed: DocName, vector: Vector) => {
        if (changed === doc) send(`event: change\ndata: ${JSON.stringify({ doc, vector })}\n\n`);
      };
      docs.on('change', onChange);
      const keepAlive = setInterval(() => send(': keep-alive\n\n'), 15_000);
      const expiry = longTimeout(() => res.end(), grant.expiresAt - now());
      req.socket.setTimeout(0);
      await new Promise<void>((resolve) => res.once('close', resolve));
      docs.off('change', onChange);
      clearInterval(keepAlive);
      expiry.cancel();
    },
  };
}
