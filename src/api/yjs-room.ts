import type { WebSocket } from 'ws';
import * as encoding from 'lib0/encoding';
import * as awarenessProtocol from 'y-protocols/awareness';
import { LocalOrigin } from '../sync/docs.js';
import type { LiveDoc } from '../sync/live-doc.js';
import type { DocName } from '../types.js';
import type { AwarenessOwners } from './awareness-guard.js';

export const MESSAGE_SYNC = 0;
export const MESSAGE_AWARENESS = 1;
export const SYNC_UPDATE = 2;

/**
 * One document's connected apps on this node, and their awareness
 * (presence). Every update of the document goes to each app but the one
 * that sent it; every awareness change goes to all. Each awareness clientID
 * belongs to the connection that brought it in, and leaves with it.
 */
export class Room implements AwarenessOwners {
  readonly conns = new Set<WebSocket>();
  readonly awareness: awarenessProtocol.Awareness;
  /** Which connection holds each awareness clientID (none may touch another's). */
  readonly owners = new Map<number, WebSocket>();
  /** Every clientID each connection has brought in (bounded by the awareness guard). */
  readonly #brought = new Map<WebSocket, Set<number>>();
  readonly #onUpdate: (update: Uint8Array, origin: unknown) => void;
  readonly doc: DocName;
  readonly live: LiveDoc;

  constructor(doc: DocName, live: LiveDoc, send: (ws: WebSocket, msg: Uint8Array) => void) {
    this.doc = doc;
    this.live = live;
    this.awareness = new awarenessProtocol.Awareness(live.ydoc);
    this.awareness.setLocalState(null);
    this.#onUpdate = (update, origin) => {
      const author = origin instanceof LocalOrigin ? origin.author : undefined;
      const e = encoding.createEncoder();
      encoding.writeVarUint(e, MESSAGE_SYNC);
      encoding.writeVarUint(e, SYNC_UPDATE);
      encoding.writeVarUint8Array(e, update);
      const msg = encoding.toUint8Array(e);
      for (const c of this.conns) if (c !== author) send(c, msg);
    };
    live.ydoc.on('update', this.#onUpdate);
    this.awareness.on('update', ({ added, updated, removed }: { added: number[]; updated: number[]; removed: number[] }, origin: unknown) => {
      const from = this.#brought.get(origin as WebSocket);
      if (from) {
        for (const id of [...added, ...updated]) {
          if (this.owners.has(id)) continue;
          this.owners.set(id, origin as WebSocket);
          from.add(id);
        }
      }
      for (const id of removed) this.owners.delete(id);
      const msg = awarenessMessage(this.awareness, [...added, ...updated, ...removed]);
      for (const c of this.conns) send(c, msg);
    });
  }

  broughtBy(conn: object): ReadonlySet<number> {
    return this.#brought.get(conn as WebSocket) ?? NONE;
  }

  join(ws: WebSocket): void {
    this.conns.add(ws);
    this.#brought.set(ws, new Set());
  }

  /** Takes `ws` and its awareness states out; true when no app is left. */
  leave(ws: WebSocket): boolean {
    this.conns.delete(ws);
    this.#brought.delete(ws);
    const ids = [...this.owners].filter(([, c]) => c === ws).map(([id]) => id);
    if (ids.length) awarenessProtocol.removeAwarenessStates(this.awareness, ids, null);
    return this.conns.size === 0;
  }

  /** Stops following the document (once the last app left). */
  close(): void {
    this.live.ydoc.off('update', this.#onUpdate);
    this.awareness.destroy();
  }
}

const NONE: ReadonlySet<number> = new Set();

export function awarenessMessage(awareness: awarenessProtocol.Awareness, clients: number[]): Uint8Array {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, MESSAGE_AWARENESS);
  encoding.writeVarUint8Array(e, awarenessProtocol.encodeAwarenessUpdate(awareness, clients));
  return encoding.toUint8Array(e);
}
