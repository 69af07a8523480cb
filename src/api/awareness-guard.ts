import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import type { Awareness } from 'y-protocols/awareness';
import { HttpError } from './http.js';

/** Awareness clients one app connection may bring in over its life (a WebsocketProvider has one: its doc's clientID). */
export const MAX_AWARENESS_CLIENTS = 16;

/** Bytes of one awareness state as JSON (a cursor, a user's name and colour). */
export const MAX_AWARENESS_STATE_BYTES = 64 * 1024;

/** Who holds which awareness clientID in one document's room. */
export interface AwarenessOwners {
  readonly owners: ReadonlyMap<number, object>;
  /** The clientIDs a connection has brought in so far, held or not. */
  broughtBy(conn: object): ReadonlySet<number>;
}

/**
 * The part of an app's awareness update the node may apply: entries for the
 * clientIDs this connection holds, and new clientIDs up to
 * MAX_AWARENESS_CLIENTS. Entries for another connection's clientIDs (a
 * WebsocketProvider echoes every state it hears back), for the node's own,
 * stale ones and removals of clientIDs nobody holds are left out, so that no
 * app can overwrite or remove another app's presence. Undefined when nothing
 * is left. A malformed update or too many clients is a 400; a state over
 * MAX_AWARENESS_STATE_BYTES a 413.
 */
export function admitAwareness(update: Uint8Array, awareness: Awareness, room: AwarenessOwners, conn: object): Uint8Array | undefined {
  const kept: [number, number, string][] = [];
  const brought = room.broughtBy(conn);
  const fresh = new Set<number>();
  for (const { id, clock, json, removal } of readEntries(update)) {
    const owner = room.owners.get(id);
    if (owner !== undefined && owner !== conn) continue;
    if (owner === undefined) {
      if (id === awareness.clientID || removal || clock <= (awareness.meta.get(id)?.clock ?? 0)) continue;
      if (!brought.has(id)) fresh.add(id);
      if (brought.size + fresh.size > MAX_AWARENESS_CLIENTS) {
        throw new HttpError(400, 'too_many_clients', `one connection may bring at most ${MAX_AWARENESS_CLIENTS} awareness clients`);
      }
    }
    kept.push([id, clock, json]);
  }
  if (kept.length === 0) return undefined;
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, kept.length);
  for (const [id, clock, json] of kept) {
    encoding.writeVarUint(e, id);
    encoding.writeVarUint(e, clock);
    encoding.writeVarString(e, json);
  }
  return encoding.toUint8Array(e);
}

interface Entry {
  readonly id: number;
  readonly clock: number;
  readonly json: string;
  /** A null state: the client is gone. */
  readonly removal: boolean;
}

/** The entries of an awareness update, each state checked to be JSON within its size bound. */
function readEntries(update: Uint8Array): Entry[] {
  const out: Entry[] = [];
  try {
    const d = decoding.createDecoder(update);
    const n = decoding.readVarUint(d);
    for (let i = 0; i < n; i++) {
      const id = decoding.readVarUint(d);
      const clock = decoding.readVarUint(d);
      const json = decoding.readVarString(d);
      if (Buffer.byteLength(json) > MAX_AWARENESS_STATE_BYTES) {
        throw new HttpError(413, 'too_large', `an awareness state exceeds ${MAX_AWARENESS_STATE_BYTES} bytes`);
      }
      out.push({ id, clock, json, removal: JSON.parse(json) === null });
    }
    if (decoding.hasContent(d)) throw new Error('bytes left over');
  } catch (err) {
    if (err instanceof HttpError) throw err;
    throw new HttpError(400, 'bad_message', 'malformed awareness update');
  }
  return out;
}
