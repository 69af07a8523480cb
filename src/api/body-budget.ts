import { HttpError } from './http.js';

/**
 * The bytes of request bodies held at once across all API requests
 * (DESIGN.md §9): a body holds its share from the moment it is announced
 * (Content-Length) or read, until its request is done. Beyond the budget the
 * request is answered 503 `busy` at once, before its body is read further.
 */
export class BodyBudget {
  readonly #max: number;
  #held = 0;
  #refused = 0;

  constructor(max: number) {
    this.#max = max;
  }

  /** A share of the budget for one request, empty until it grows; give it back with `release`. */
  open(): BodyShare {
    let held = 0;
    return {
      grow: (bytes) => {
        if (bytes <= held) return;
        if (this.#held + bytes - held > this.#max) {
          this.#refused++;
          throw new HttpError(503, 'busy', `request bodies waiting to be handled exceed ${this.#max} bytes; retry`);
        }
        this.#held += bytes - held;
        held = bytes;
      },
      release: () => {
        this.#held -= held;
        held = 0;
      },
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
