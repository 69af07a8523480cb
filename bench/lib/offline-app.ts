import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import type { MeshNode } from './mesh-node.js';
import { until } from './wait.js';

/** How a node answered an app that came back with everything it holds. */
export interface Comeback {
  readonly node: string;
  /** The code the node closed the app's socket with (4409: content refused), or null if it kept the socket open. */
  readonly code: number | null;
}

/**
 * A Yjs app that keeps its Y.Doc across connections, as a browser tab does:
 * it syncs with a node through y-websocket (`disableBc`: Node 20 has a
 * global BroadcastChannel), goes offline, edits, and comes back (to the same
 * node or another) offering all it holds in its sync step.
 */
export class OfflineApp {
  readonly doc = new Y.Doc();
  readonly #room: string;
  #provider: WebsocketProvider | undefined;

  constructor(room: string) {
    this.#room = room;
  }

  get map(): Y.Map<unknown> {
    return this.doc.getMap('m');
  }

  /** Connects to the node's `/v1/yjs` route and waits for the first sync. */
  async connect(node: MeshNode): Promise<void> {
    this.#open(node);
    const p = this.#provider!;
    await until(`the app synced with ${node.name}`, () => (p.synced ? true : undefined), { timeoutMs: 30_000, intervalMs: 20 });
  }

  /** Goes offline (the Y.Doc stays). */
  disconnect(): void {
    this.#provider?.destroy();
    this.#provider = undefined;
  }

  /**
   * Sets `key` while offline, then connects to `node`; resolves with the
   * close code the node sends within `waitMs` (null if none), offline again.
   */
  async comeBack(node: MeshNode, key: string, value: string, waitMs = 20_000): Promise<Comeback> {
    this.disconnect();
    this.map.set(key, value);
    const closed = new Promise<number>((resolve) => this.#open(node).on('connection-close', (event) => resolve(event?.code ?? -1)));
    const code = await Promise.race([closed, new Promise<null>((resolve) => setTimeout(() => resolve(null), waitMs).unref())]);
    this.disconnect();
    return { node: node.name, code };
  }

  destroy(): void {
    this.disconnect();
    this.doc.destroy();
  }

  #open(node: MeshNode): WebsocketProvider {
    this.#provider = new WebsocketProvider(node.current.yjs, this.#room, this.doc, {
      WebSocketPolyfill: WebSocket as never,
      disableBc: true,
      params: { token: node.current.token },
    });
    return this.#provider;
  }
}
