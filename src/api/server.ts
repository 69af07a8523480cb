import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { ApiGrant } from '../tokens/api-token.js';
import type { HostPort } from '../util/address.js';
import { docNameProblem } from '../config/names.js';
import type { DocName } from '../types.js';
import { HttpError, sendError } from './http.js';
import { RevokedError, StoreError } from '../errors.js';
import { hostAllowed, originAllowed } from './host-check.js';

/** What a route handler gets: the request, its verified token and the doc it names, if any. */
export interface RouteContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly url: URL;
  readonly grant: ApiGrant;
  readonly doc: DocName | undefined;
}

export type RouteHandler = (ctx: RouteContext) => Promise<void>;

/** A route: method, and either a fixed path or a doc sub-route ('' for the doc itself). */
export type Route =
  | { readonly method: string; readonly path: string; readonly handler: RouteHandler }
  | { readonly method: string; readonly docRoute: '' | '/state' | '/updates' | '/events' | '/authors'; readonly handler: RouteHandler };

/** Upgrade handler for the WebSocket routes; it owns the socket once called. */
export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL, rawPath: string) => void;

export interface ApiServerOptions {
  readonly address: HostPort;
  readonly log: Logger;
  readonly authenticate: (token: string | undefined) => Promise<ApiGrant>;
  readonly routes: readonly Route[];
  readonly upgrade?: UpgradeHandler;
  /** A client must have sent its request headers within this (slowloris bound). */
  readonly headersTimeoutMs?: number;
  /** Browser origins whose pages may read the API's answers (CORS); `"*"` for any. */
  readonly allowedOrigins?: readonly string[];
}

const DOC_PATH = /^\/v1\/docs\/([^/]+)(\/state|\/updates|\/events|\/authors)?$/;

/**
 * The local HTTP API (DESIGN.md §7). Checks Host first on every request and
 * upgrade (421), then the token (401), then hands off to the route.
 */
export class ApiServer {
  readonly #opts: ApiServerOptions;
  readonly #log: Logger;
  #server: Server | undefined;
  #bound: HostPort | undefined;
  #stopping: Promise<void> | undefined;

  constructor(opts: ApiServerOptions) {
    this.#opts = opts;
    this.#log = opts.log.child({ component: 'api' });
  }

  /** The bound address (port 0 resolved). */
  get address(): HostPort {
    if (!this.#bound) throw new Error('API server not started');
    return this.#bound;
  }

  async start(): Promise<void> {
    const headersTimeout = this.#opts.headersTimeoutMs ?? 10_000;
    // requireHostHeader off: a request without Host gets the Host check's 421 and JSON body, not Node's bare 400.
    const server = createServer({ requireHostHeader: false, requestTimeout: Math.max(30_000, headersTimeout), headersTimeout, keepAliveTimeout: 5_000, connectionsCheckingInterval: Math.min(1000, headersTimeout) }, (req, res) => {
      this.#handle(req, res).catch((err) => this.#fail(res, err));
    });
    server.on('upgrade', (req, socket, head) => this.#upgrade(req, socket, head));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => refuseClient(err, socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.#opts.address.port, this.#opts.address.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    this.#bound = { host: this.#opts.address.host, port: a.port };
    this.#server = server;
  }

  stop(): Promise<void> {
    this.#stopping ??= new Promise<void>((resolve) => {
      if (!this.#server) return resolve();
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    return this.#stopping;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!hostAllowed(req.headers.host, this.address)) throw new HttpError(421, 'misdirected', 'Host header names neither this API nor a loopback name');
    if (this.#cors(req, res)) return;
    const url = targetUrl(req);
    const rawPath = rawPathOf(req);
    if (rawPath === '/healthz') {
      if (req.method !== 'GET') throw new HttpError(405, 'method_not_allowed', 'use GET');
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    }
    const match = this.#match(req.method ?? 'GET', rawPath);
    // `?token=` only where a browser cannot set a header: the SSE stream (and the WebSocket route).
    const queryToken = match && 'docRoute' in match.route && match.route.docRoute === '/events' ? url.searchParams.get('token') : null;
    const grant = await this.#opts.authenticate(bearer(req) ?? queryToken ?? undefined);
    if (!match) throw new HttpError(404, 'not_found', `no route for ${req.method} ${rawPath}`);
    const doc = match.rawDoc === undefined ? undefined : parseDocName(match.rawDoc);
    await match.route.handler({ req, res, url, grant, doc });
  }

  /**
   * CORS for the browser origins in allowedOrigins: their pages may read the
   * answers (an EventSource on `/events?token=`, a fetch with a bearer
   * token), and a preflight is answered before any token check, since a
   * browser sends none with it. True when the request was a preflight.
   */
  #cors(req: IncomingMessage, res: ServerResponse): boolean {
    const origin = req.headers.origin;
    const allowed = origin !== undefined && originAllowed(this.#opts.allowedOrigins ?? [], origin);
    if (allowed) res.setHeader('access-control-allow-origin', origin).setHeader('vary', 'Origin');
    if (req.method !== 'OPTIONS') return false;
    if (!allowed) throw new HttpError(403, 'origin_not_allowed', 'this Origin is not in allowedOrigins');
    res.writeHead(204, { 'access-control-allow-methods': 'GET, POST', 'access-control-allow-headers': 'authorization, content-type', 'access-control-max-age': '600' }).end();
    return true;
  }

  /** Routes match the raw path (DESIGN.md §7), so `.` and `..` reach the name check instead of being resolved away. */
  #match(method: string, rawPath: string): { route: Route; rawDoc?: string } | undefined {
    const m = DOC_PATH.exec(rawPath);
    for (const route of this.#opts.routes) {
      if ('path' in route) {
        if (route.path === rawPath && route.method === method) return { route };
      } else if (m && route.method === method && route.docRoute === (m[2] ?? '')) {
        return { route, rawDoc: m[1]! };
      }
    }
    return undefined;
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    if (!hostAllowed(req.headers.host, this.address)) return refuseUpgrade(socket, 421, 'Misdirected Request');
    let url: URL;
    try {
      url = targetUrl(req);
    } catch {
      // Thrown out of this event handler, it would end the process.
      return refuseUpgrade(socket, 400, 'Bad Request');
    }
    if (!this.#opts.upgrade) return refuseUpgrade(socket, 404, 'Not Found');
    try {
      this.#opts.upgrade(req, socket, head, url, rawPathOf(req));
    } catch (err) {
      this.#log.error({ err }, 'upgrade handler failed');
      socket.destroy();
    }
  }

  #fail(res: ServerResponse, err: unknown): void {
    if (err instanceof HttpError) return sendError(res, err);
    if (err instanceof RevokedError) return sendError(res, new HttpError(403, 'revoked', err.message));
    // Any route: the store failing under a read (a document loading) or a write is a 503 to retry.
    if (err instanceof StoreError) {
      this.#log.warn({ err }, 'API request failed on the store');
      return sendError(res, new HttpError(503, 'store_unavailable', 'storage is not available; retry later'));
    }
    this.#log.error({ err }, 'API request failed');
    sendError(res, new HttpError(500, 'internal', 'internal error'));
  }
}

/** The request target as a URL (for its query); one that does not parse (`//`, `/\`) is a 400. */
function targetUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://api.invalid');
  } catch {
    throw new HttpError(400, 'bad_request', 'the request target is not a valid URL');
  }
}

/** The request path as sent, before any normalisation, without the query. */
export function rawPathOf(req: IncomingMessage): string {
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  return q < 0 ? raw : raw.slice(0, q);
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  return m ? m[1] : '';
}

/** Percent-decodes and validates a doc name from a path segment (400 on failure). */
export function parseDocName(raw: string): DocName {
  let name: string;
  try {
    name = decodeURIComponent(raw);
  } catch {
    throw new HttpError(400, 'bad_name', 'document name is not valid percent-encoding');
  }
  const problem = docNameProblem(name);
  if (problem) throw new HttpError(400, 'bad_name', problem);
  return name as DocName;
}

export function refuseUpgrade(socket: Duplex, status: number, text: string): void {
  endWithError(socket, status, text, text.toLowerCase().replace(/\s+/g, '_'), text);
}

/** Answers on a raw socket with a status and the JSON error body, and closes it. */
function endWithError(socket: Duplex, status: number, text: string, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

/**
 * Bad input before a request could be parsed (headers too large, not HTTP,
 * headers not sent in time) still gets an answer with the JSON error body,
 * then the connection closes.
 */
function refuseClient(err: NodeJS.ErrnoException, socket: Duplex): void {
  // Bytes already sent on this connection (a response, a stream) cannot be followed by another status line.
  if (err.code === 'ECONNRESET' || !socket.writable || (socket as Duplex & { bytesWritten?: number }).bytesWritten) {
    socket.destroy();
    return;
  }
  const [status, text, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'headers_too_large', 'the request headers are too large']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'timeout', 'the request headers did not arrive in time']
        : [400, 'Bad Request', 'bad_request', 'the request is not valid HTTP'];
  endWithError(socket, status, text, code, message);
  socket.once('finish', () => socket.destroy());
}
