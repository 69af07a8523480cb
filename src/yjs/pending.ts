import * as Y from 'yjs';

/**
 * Yjs keeps structs it cannot integrate yet (their origin, right origin,
 * parent or own earlier clocks missing) as one pending update, with, per
 * client they wait on, the clock at which to try them again. It records the
 * clock that client had reached, not the one a struct needs: structs waiting
 * on a clock an honest client will reach only much later (or never) were
 * decoded, tried and encoded again at each of that client's keystrokes, on
 * every node (1 MB of them made each keystroke of the client cost 0.65-1 s).
 *
 * `waitForWhatIsNeeded` sets those clocks to what the pending structs need:
 * per client, the lowest clock any of them waits for. Yjs tries them again
 * as soon as one could go in, and not before. Called after every update a
 * node applies; it reads the pending update only when it changed.
 */
export function waitForWhatIsNeeded(doc: Y.Doc): void {
  const pending = doc.store.pendingStructs;
  if (!pending || refined.get(pending) === pending.update) return;
  const needs = new Map<number, number>();
  /** The struct can go in once `client` holds more than `clock`. */
  const need = (client: number, clock: number) => {
    if (clock < Y.getState(doc.store, client)) return;
    const had = needs.get(client);
    if (had === undefined || clock < had) needs.set(client, clock);
  };
  for (const s of Y.decodeUpdateV2(pending.update).structs) {
    if (s instanceof Y.Skip) continue;
    // Its own client's earlier clocks first.
    need(s.id.client, s.id.clock - 1);
    if (!(s instanceof Y.Item)) continue;
    if (s.origin) need(s.origin.client, s.origin.clock);
    if (s.rightOrigin) need(s.rightOrigin.client, s.rightOrigin.clock);
    if (s.parent instanceof Y.ID) need(s.parent.client, s.parent.clock);
  }
  // Nothing it waits for is missing (it would go in at the next update anyway): Yjs's own clocks stay.
  if (needs.size) pending.missing = needs;
  // Either way, read again only once Yjs has changed the pending update.
  refined.set(pending, pending.update);
}

/** The pending update each pending set's clocks were last worked out for. */
const refined = new WeakMap<object, Uint8Array>();
