import { HttpError } from './http.js';

/**
 * The bytes of app updates held at once across the local API (DESIGN.md
 * §9): a POSTed body holds what has arrived of it until its request is
 * done, a y-websocket write its update until it is durable; at most `max`
 * in all and half of that for one token (so that one app cannot shut the
 * others out). Beyond either, the request is answered 503 `busy` at once
 * (a WebSocket is closed 4503), before more of it is read.
 */
export class BodyBudget {
  readonly #max: number;
  #held = 0;
  readonly #byToken = new Map<string, number>();
  #refused = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** A share of the budget for one request made with the token `tokenId`, empty until it grows; give it back with `release`. */
  open(tokenId: string): BodyShare {
    let held = 0;
    const add = (bytes: number) => {
      this.#held += bytes;
      const left = (this.#byToken.get(tokenId) ?? 0) + bytes;
      if (left > 0) this.#byToken.set(tokenId, left);
      else this.#byToken.delete(tokenId);
      held += bytes;
    };
    return {
      grow: (bytes) => {
        if (bytes <= held) return;
        const more = bytes - held;
        if (this.#held + more > this.#max || (this.#byToken.get(tokenId) ?? 0) + more > this.#max / 2) {
          this.#refused++;
          throw new HttpError(503, 'busy', `app updates not yet durable exceed ${this.#max} bytes, or half of that for this token; retry`);
        }
        add(more);
      },
      release: () => add(-held),
    };
  }

  /** Bytes held now. */
  get held(): number {
    return this.#held;
  }

  /** Requests refused since start. */
  get refused(): number {
    return this.#refused;
  }
}

/** One request's share of a BodyBudget. */
export interface BodyShare {
  /** Holds `bytes` in all for this request (never less than before), or throws a 503. */
  grow(bytes: number): void;
  release(): void;
}
