import type { Logger } from 'pino';
import { HttpError } from './http.js';

/**
 * The bound on long-lived app connections (DESIGN.md §9): WebSockets and
 * event streams open on the local API, at most `max` in all and `perToken`
 * for one token (its `jti`), so one app, or one app's reconnect loop, cannot
 * take them all. A connection holds its slot from the moment its token and
 * scope are checked (before its document loads) until it closes.
 */
export class AppConnections {
  readonly #max: number;
  readonly #perToken: number;
  readonly #log: Logger;
  /** Slots held per token id; a token is removed when it gives back its last one. */
  readonly #byToken = new Map<string, number>();
  #open = 0;
  #refused = 0;
  /** A refusal was logged as a warning since a slot was last given back (a reconnect loop does not flood the log). */
  #warned = false;

  constructor(opts: { max: number; perToken: number; log: Logger }) {
    this.#max = opts.max;
    this.#perToken = opts.perToken;
    this.#log = opts.log.child({ component: 'app-connections' });
  }

  /**
   * Takes a slot for a connection made with the token `tokenId`, or throws a
   * 503 `too_many_connections`. Returns the function that gives the slot
   * back: once, however often it is called.
   */
  take(tokenId: string): () => void {
    const held = this.#byToken.get(tokenId) ?? 0;
    if (this.#open >= this.#max || held >= this.#perToken) this.#refuse(held);
    this.#open++;
    this.#byToken.set(tokenId, held + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
      this.#warned = false;
      const left = this.#byToken.get(tokenId)! - 1;
      if (left > 0) this.#byToken.set(tokenId, left);
      else this.#byToken.delete(tokenId);
    };
  }

  /** Connections open now. */
  get open(): number {
    return this.#open;
  }

  /** Connections refused since start. */
  get refused(): number {
    return this.#refused;
  }

  #refuse(held: number): never {
    this.#refused++;
    const all = this.#open >= this.#max;
    const message = all
      ? `the node holds ${this.#max} app connections (maxAppConnections); retry later`
      : `this token holds ${held} connections (maxAppConnectionsPerToken); close one or retry later`;
    if (!this.#warned) this.#log.warn({ open: this.#open, limit: all ? 'maxAppConnections' : 'maxAppConnectionsPerToken' }, 'app connection refused: too many connections');
    this.#warned = true;
    throw new HttpError(503, 'too_many_connections', message);
  }
}
