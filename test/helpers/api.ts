import { request, type IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import * as encoding from 'lib0/encoding';

/** Raw HTTP and WebSocket requests for the API contract tests: paths go out exactly as written. */

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
}

/** One HTTP request on a raw path; an SSE answer resolves at its headers. */
export function http(port: number, opts: { method?: string; path: string; headers?: Record<string, string>; body?: Uint8Array }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body) headers['content-length'] = String(opts.body.byteLength);
    const req = request({ host: '127.0.0.1', port, method: opts.method ?? 'GET', path: opts.path, headers }, (res) => {
      if (String(res.headers['content-type']).startsWith('text/event-stream')) {
        resolve({ status: res.statusCode!, headers: res.headers, text: '' });
        res.destroy();
        return;
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text }));
      res.on('error', reject);
    });
    // The server may answer (401, 403, 413) before it reads a large body.
    req.on('error', reject);
    req.end(opts.body);
  });
}

export type WsOutcome = { kind: 'http'; status: number; body: string } | { kind: 'open'; first: Buffer } | { kind: 'close'; code: number; reason: string };

/** A WebSocket upgrade by hand on a raw path: the HTTP refusal, or the first frame the server sends. */
/** One line for an upgrade's outcome: `http STATUS`, `close CODE`, or `open` once the server's sync step 1 came first. */
export function wsOutcome(o: WsOutcome): string {
  if (o.kind === 'http') return `http ${o.status}`;
  if (o.kind === 'close') return `close ${o.code}`;
  // y-websocket sync step 1 from the server: [messageSync=0, syncStep1=0, ...]
  return o.first[0] === 0 && o.first[1] === 0 ? 'open' : `open (unexpected first frame ${o.first.toString('hex')})`;
}

export function rawWs(port: number, path: string, headers: Record<string, string> = {}): Promise<WsOutcome> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'), ...headers },
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ kind: 'http', status: res.statusCode!, body }));
    });
    req.on('upgrade', (_res, socket, head) => {
      let buf = Buffer.from(head);
      const tryFrame = () => {
        if (buf.length < 2) return;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        socket.destroy();
        if ((buf[0]! & 0x0f) === 8) resolve({ kind: 'close', code: payload.readUInt16BE(0), reason: payload.subarray(2).toString('utf8') });
        else resolve({ kind: 'open', first: Buffer.from(payload) });
      };
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        tryFrame();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => reject(new Error(`socket closed before the first frame on ${path}`)));
      tryFrame();
    });
    req.on('error', reject);
    req.end();
  });
}

/** `200`, or `STATUS CODE` once the body is checked to be exactly `{"error":{"code","message"}}`. */
export function outcome(a: Answer): string {
  if (a.status >= 200 && a.status < 300) return String(a.status);
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    return `${a.status} (not JSON: ${a.text.slice(0, 60)})`;
  }
  const err = (body as { error?: { code?: unknown; message?: unknown } }).error;
  const exact =
    String(a.headers['content-type']).startsWith('application/json') &&
    Object.keys(body as object).join() === 'error' &&
    Object.keys(err ?? {}).sort().join() === 'code,message' &&
    typeof err?.code === 'string' &&
    typeof err.message === 'string' &&
    err.message.length > 0;
  return exact ? `${a.status} ${err!.code}` : `${a.status} (bad error body: ${a.text.slice(0, 80)})`;
}

/** A hand-built y-websocket sync message (messageSync, then `sub`: 0 step 1, 1 step 2, 2 update) carrying `u`. */
export function syncMessage(sub: 0 | 1 | 2, u: Uint8Array): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, sub);
  encoding.writeVarUint8Array(e, u);
  return encoding.toUint8Array(e);
}

/** An awareness update (y-protocols): per client its id, clock and JSON state. */
export function awarenessUpdate(entries: readonly (readonly [client: number, clock: number, state: string])[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, entries.length);
  for (const [client, clock, state] of entries) {
    encoding.writeVarUint(e, client);
    encoding.writeVarUint(e, clock);
    encoding.writeVarString(e, state);
  }
  return encoding.toUint8Array(e);
}
