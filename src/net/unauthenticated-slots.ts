import { addressGroup } from '../util/address.js';

/** Which cap a new connection would break: all slots are taken, or all of its address's share. */
export type SlotsFull = 'all' | 'address';

/**
 * The listener's slots for connections still in their handshake: at most
 * `max` in all and `perAddress` from one address group (an IPv4 address, or
 * an IPv6 /64; see `addressGroup`), so one host cannot take every slot and
 * keep honest peers out. A holder keeps its slot until `release`, which
 * gives it back once however often it is called.
 */
export class UnauthenticatedSlots<T> {
  readonly #max: number;
  readonly #perAddress: number;
  readonly #held = new Map<T, string>();
  /** Slots held per address group; a group is removed when its last slot is given back. */
  readonly #byGroup = new Map<string, number>();

  constructor(opts: { max: number; perAddress: number }) {
    this.#max = opts.max;
    this.#perAddress = opts.perAddress;
  }

  /** Whether a connection from `address` would be over a cap now, and which. */
  full(address: string): SlotsFull | undefined {
    if (this.#held.size >= this.#max) return 'all';
    if ((this.#byGroup.get(addressGroup(address)) ?? 0) >= this.#perAddress) return 'address';
    return undefined;
  }

  /** Gives `holder`, connected from `address`, a slot (the caller checked `full` first). */
  take(holder: T, address: string): void {
    if (this.#held.has(holder)) return;
    const group = addressGroup(address);
    this.#held.set(holder, group);
    this.#byGroup.set(group, (this.#byGroup.get(group) ?? 0) + 1);
  }

  /** Gives `holder`'s slot back; does nothing if it holds none (any more). */
  release(holder: T): void {
    const group = this.#held.get(holder);
    if (group === undefined) return;
    this.#held.delete(holder);
    const left = this.#byGroup.get(group)! - 1;
    if (left > 0) this.#byGroup.set(group, left);
    else this.#byGroup.delete(group);
  }
}
