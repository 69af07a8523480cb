import { addressGroups } from '../util/address.js';

/** Which cap a new connection would break: all slots are taken, or all of its address's share. */
export type SlotsFull = 'all' | 'address';

/**
 * The listener's slots for connections still in their handshake: at most
 * `max` in all and `perAddress` from one address group (an IPv4 address, or
 * an IPv6 /64, and twice and four times that from its /56 and /48; see
 * `addressGroups`), so one host or site cannot take every slot and keep
 * honest peers out. A holder keeps its slot until `release`, which
 * gives it back once however often it is called.
 */
export class UnauthenticatedSlots<T> {
  readonly #max: number;
  readonly #perAddress: number;
  readonly #held = new Map<T, string[]>();
  /** Slots held per address group; a group is removed when its last slot is given back. */
  readonly #byGroup = new Map<string, number>();

  constructor(opts: { max: number; perAddress: number }) {
    this.#max = opts.max;
    this.#perAddress = opts.perAddress;
  }

  /** Whether a connection from `address` would be over a cap now, and which. */
  full(address: string): SlotsFull | undefined {
    if (this.#held.size >= this.#max) return 'all';
    for (const { key, share } of addressGroups(address)) if ((this.#byGroup.get(key) ?? 0) >= this.#perAddress * share) return 'address';
    return undefined;
  }

  /** Gives `holder`, connected from `address`, a slot (the caller checked `full` first). */
  take(holder: T, address: string): void {
    if (this.#held.has(holder)) return;
    const keys = addressGroups(address).map((g) => g.key);
    this.#held.set(holder, keys);
    for (const key of keys) this.#byGroup.set(key, (this.#byGroup.get(key) ?? 0) + 1);
  }

  /** Gives `holder`'s slot back; does nothing if it holds none (any more). */
  release(holder: T): void {
    const keys = this.#held.get(holder);
    if (keys === undefined) return;
    this.#held.delete(holder);
    for (const key of keys) {
      const left = this.#byGroup.get(key)! - 1;
      if (left > 0) this.#byGroup.set(key, left);
      else this.#byGroup.delete(key);
    }
  }
}
