import * as Y from 'yjs';
import type { Route, RouteContext } from '../server.js';
import { HttpError, readBody, sendBytes, sendJson } from '../http.js';
import type { Docs } from '../../sync/docs.js';
import type { Store } from '../../store/store.js';
import { readFeed } from '../../store/records.js';
import { UpdateDecodeError, normalizeRanges } from '../../yjs/parse.js';
import { readEnvelopeClaims } from '../../sync/envelope.js';
import { feedOrigin } from '../../sync/overlap.js';
import { docToJson } from '../../yjs/to-json.js';
import type { DocName, FeedKey, NodeId } from '../../types.js';
import type { Access } from '../../tokens/api-token.js';
import type { BodyBudget } from '../body-budget.js';

export interface DocRoutesDeps {
  readonly docs: Docs;
  readonly store: Store;
  readonly maxUpdateBytes: number;
  /** Bytes of update bodies held at once, all requests together. */
  readonly bodies: BodyBudget;
  readonly nameOf: (origin: NodeId) => string | null;
}

/** The document routes of DESIGN.md §7, in its order of refusals. */
export function docRoutes(deps: DocRoutesDeps): Route[] {
  const { docs } = deps;
  return [
    {
      method: 'GET',
      path: '/v1/docs',
      handler: async ({ res, grant }) => {
        const list = [];
        for (const name of docs.names()) if (grant.covers('read', name)) list.push({ name, vector: await docs.vector(name) });
        sendJson(res, 200, { docs: list });
      },
    },
    {
      method: 'GET',
      docRoute: '',
      handler: async (ctx) => {
        const doc = existing(ctx, docs, 'read');
        sendJson(ctx.res, 200, docToJson((await docs.open(doc)).ydoc));
      },
    },
    {
      method: 'GET',
      docRoute: '/state',
      handler: async (ctx) => {
        const doc = existing(ctx, docs, 'read');
        const sv = ctx.url.searchParams.get('sv');
        let target: Uint8Array | undefined;
        if (sv !== null) {
          target = Buffer.from(sv, 'base64url');
          try {
            Y.decodeStateVector(target);
          } catch {
            throw new HttpError(400, 'bad_state_vector', 'sv must be a base64url-encoded Yjs state vector');
          }
        }
        sendBytes(ctx.res, Y.encodeStateAsUpdate((await docs.open(doc)).ydoc, target));
      },
    },
    {
      method: 'POST',
      docRoute: '/updates',
      handler: async (ctx) => {
        const doc = named(ctx, 'write');
        // The body holds its share of the budget until it is durable (or refused).
        const share = deps.bodies.open(ctx.grant.id);
        try {
          const body = await readBody(ctx.req, deps.maxUpdateBytes, share);
          const { vector, refused } = await docs.write(doc, body);
          if (refused.length) {
            sendJson(ctx.res, 409, { error: { code: 'refused', message: 'part of the update was refused; the rest was accepted' }, refused, vector });
            return;
          }
          sendJson(ctx.res, 200, { vector });
        } catch (err) {
          if (err instanceof UpdateDecodeError) throw new HttpError(400, 'bad_update', err.message);
          throw err;
        } finally {
          share.release();
        }
      },
    },
    {
      method: 'GET',
      docRoute: '/authors',
      handler: async (ctx) => {
        const doc = existing(ctx, docs, 'read');
        sendJson(ctx.res, 200, { authors: await authors(deps, doc) });
      },
    },
  ];
}

/** The doc named in the path, with the token's scope checked (403). */
function named(ctx: RouteContext, access: Access): DocName {
  const doc = ctx.doc!;
  if (!ctx.grant.covers(access, doc)) throw new HttpError(403, 'forbidden', `token has no ${access} scope for this document`);
  return doc;
}

/** As `named`, and 404 for a document this node has never seen. */
function existing(ctx: RouteContext, docs: Docs, access: Access): DocName {
  const doc = named(ctx, access);
  if (!docs.has(doc)) throw new HttpError(404, 'not_found', 'this node has never seen that document');
  return doc;
}

async function authors(deps: DocRoutesDeps, doc: DocName) {
  const vector = await deps.docs.vector(doc);
  const byOrigin = new Map<NodeId, { envelopes: number; spans: [number, number, number][] }>();
  for (const feed of Object.keys(vector) as FeedKey[]) {
    const origin = feedOrigin(feed);
    const entry = byOrigin.get(origin) ?? byOrigin.set(origin, { envelopes: 0, spans: [] }).get(origin)!;
    for await (const env of readFeed(deps.store, doc, feed)) {
      entry.envelopes++;
      entry.spans.push(...readEnvelopeClaims(env.token).clients);
    }
  }
  return [...byOrigin].map(([origin, e]) => ({ origin, name: deps.nameOf(origin), envelopes: e.envelopes, clients: normalizeRanges(e.spans) }));
}
