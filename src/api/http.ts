import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BodyShare } from './body-budget.js';

/** An API refusal: the status, a stable code and a message for the client. */
export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
  res.end(text);
}

/** Every error body is `{ "error": { "code", "message" } }` (DESIGN.md §7). */
export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, err.status, { error: { code: err.code, message: err.message } });
}

export function sendBytes(res: ServerResponse, bytes: Uint8Array): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.byteLength, 'cache-control': 'no-store' });
  res.end(bytes);
}

/**
 * Reads a request body up to `limit` bytes: 413 from Content-Length before
 * reading, or as soon as the count passes the limit while streaming. With a
 * `share` of the node's body budget, the bytes read are held there: 503 when
 * the budget has no room for them.
 */
export async function readBody(req: IncomingMessage, limit: number, share?: BodyShare): Promise<Uint8Array> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new HttpError(413, 'too_large', `body exceeds ${limit} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new HttpError(413, 'too_large', `body exceeds ${limit} bytes`);
      share?.grow(size);
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof HttpError) throw err;
    // The client's connection ended before its body did (Node's 'aborted'): bad input, not an internal error.
    throw new HttpError(400, 'bad_body', 'the request body ended before it was complete');
  }
  return new Uint8Array(Buffer.concat(chunks, size));
}
