/**
 * A typed client for a Tessera node's local API (DESIGN.md §7).
 *
 *   const client = new TesseraClient({ url: 'http://127.0.0.1:7401', token });
 *   const status = await client.status();
 */
import type { StatusBody } from '../api/routes/status.js';
import { TesseraError } from '../errors.js';

export type { StatusBody };

/** An error answer from the API: HTTP status plus the body's stable code. */
export class TesseraApiError extends TesseraError {
  readonly status: number;
  constructor(status: number, code: string, message: string) {
    super(code, message);
    this.status = status;
  }
}

export interface TesseraClientOptions {
  /** Base URL of the API, e.g. `http://127.0.0.1:7401`. */
  readonly url: string;
  /** A token from `tessera token`. */
  readonly token: string;
}

export class TesseraClient {
  readonly #base: string;
  readonly #token: string;

  constructor(opts: TesseraClientOptions) {
    this.#base = opts.url.replace(/\/+$/, '');
    this.#token = opts.token;
  }

  /** `GET /v1/docs`: the documents this token may read, with their vectors. */
  async list(): Promise<{ name: string; vector: Record<string, number> }[]> {
    return (await this.#json<{ docs: { name: string; vector: Record<string, number> }[] }>('GET', '/v1/docs')).docs;
  }

  /** `GET /v1/docs/{name}`: the document as JSON. */
  get(name: string): Promise<Record<string, unknown>> {
    return this.#json('GET', `/v1/docs/${encodeURIComponent(name)}`);
  }

  /** `GET /v1/docs/{name}/state`: the Yjs state (or what `stateVector` lacks) as one V1 update. */
  async state(name: string, stateVector?: Uint8Array): Promise<Uint8Array> {
    const q = stateVector ? `?sv=${Buffer.from(stateVector).toString('base64url')}` : '';
    return new Uint8Array(await (await this.request('GET', `/v1/docs/${encodeURIComponent(name)}/state${q}`)).arrayBuffer());
  }

  /** `POST /v1/docs/{name}/updates`: resolves with the vector once the write is durable. */
  async write(name: string, update: Uint8Array): Promise<Record<string, number>> {
    return (await this.#json<{ vector: Record<string, number> }>('POST', `/v1/docs/${encodeURIComponent(name)}/updates`, update)).vector;
  }

  /** `GET /v1/docs/{name}/authors`: who wrote what. */
  async authors(name: string): Promise<{ origin: string; name: string | null; envelopes: number; clients: [number, number, number][] }[]> {
    return (await this.#json<{ authors: never[] }>('GET', `/v1/docs/${encodeURIComponent(name)}/authors`)).authors;
  }

  /** `GET /v1/verify`: the running node re-checks every stored envelope. */
  verify(): Promise<{ ok: boolean; docs: number; envelopes: number; problems: { doc: string; feed: string; seq: number | null; problem: string }[] }> {
    return this.#json('GET', '/v1/verify');
  }

  /**
   * `GET /v1/docs/{name}/events`: calls `onChange` with the document's new
   * vector on every change (local or replicated) until the returned function
   * is called or the token expires.
   */
  subscribe(name: string, onChange: (change: { doc: string; vector: Record<string, number> }) => void, onError?: (err: unknown) => void): () => void {
    const abort = new AbortController();
    void (async () => {
      const res = await this.request('GET', `/v1/docs/${encodeURIComponent(name)}/events`, undefined, abort.signal);
      const decoder = new TextDecoder();
      let buffer = '';
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^event: change\ndata: (.*)$/m.exec(event);
          if (data) onChange(JSON.parse(data[1]!) as { doc: string; vector: Record<string, number> });
        }
      }
    })().catch((err: unknown) => {
      if (!abort.signal.aborted) onError?.(err);
    });
    return () => abort.abort();
  }

  /** `GET /v1/cutoff?node=ID` (`read:**`): what this node holds of a node's feeds, as a revocation cutoff. */
  async cutoff(node: string): Promise<Record<string, Record<string, number>>> {
    return (await this.#json<{ cutoff: Record<string, Record<string, number>> }>('GET', `/v1/cutoff?node=${encodeURIComponent(node)}`)).cutoff;
  }

  /** `GET /v1/status`. */
  status(): Promise<StatusBody> {
    return this.#json<StatusBody>('GET', '/v1/status');
  }

  protected async request(method: string, path: string, body?: Uint8Array, signal?: AbortSignal): Promise<Response> {
    const init: RequestInit = { method, headers: { authorization: `Bearer ${this.#token}`, ...(body ? { 'content-type': 'application/octet-stream' } : {}) } };
    if (signal) init.signal = signal;
    if (body) init.body = body;
    let res: Response;
    try {
      res = await fetch(this.#base + path, init);
    } catch (err) {
      if (signal?.aborted) throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new TesseraError('ERR_UNREACHABLE', `cannot reach the Tessera API at ${this.#base}: ${cause?.code ?? cause?.message ?? (err as Error).message}`, { cause: err });
    }
    if (!res.ok) {
      let code = 'http_error';
      let message = `${res.status} ${res.statusText}`;
      try {
        const err = ((await res.json()) as { error?: { code?: string; message?: string } }).error;
        code = err?.code ?? code;
        message = err?.message ?? message;
      } catch {
        // not a JSON error body; keep the status line
      }
      throw new TesseraApiError(res.status, code, message);
    }
    return res;
  }

  async #json<T>(method: string, path: string, body?: Uint8Array): Promise<T> {
    return (await (await this.request(method, path, body)).json()) as T;
  }
}
