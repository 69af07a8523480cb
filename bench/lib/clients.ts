import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { until } from './wait.js';

/** An app: a Y.Doc with one Y.Text, connected through a y-websocket provider. */
export interface App {
  readonly doc: Y.Doc;
  readonly text: Y.Text;
  readonly provider: WebsocketProvider;
  /** Resolves once the provider has synced with its server. */
  synced(timeoutMs?: number): Promise<void>;
  /** Resolves with performance.now() once the text holds at least `length` characters. */
  reach(length: number, timeoutMs?: number): Promise<number>;
  destroy(): void;
}

/**
 * Connects an app to a y-websocket server (Tessera's `/v1/yjs` endpoint or
 * the baseline). `disableBc`: Node 20 has a global BroadcastChannel, and
 * providers in one process would otherwise sync with each other directly.
 */
export function connectApp(serverUrl: string, room: string, token?: string): App {
  const doc = new Y.Doc();
  const text = doc.getText('t');
  const provider = new WebsocketProvider(serverUrl, room, doc, {
    WebSocketPolyfill: WebSocket as never,
    disableBc: true,
    ...(token ? { params: { token } } : {}),
  });
  const waiters: { length: number; resolve: (t: number) => void }[] = [];
  doc.on('update', () => {
    if (!waiters.length) return;
    const now = performance.now();
    const len = text.length;
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (len >= waiters[i]!.length) {
        waiters[i]!.resolve(now);
        waiters.splice(i, 1);
      }
    }
  });
  return {
    doc,
    text,
    provider,
    synced: async (timeoutMs = 30_000) => {
      await until(`${room} synced with ${serverUrl}`, () => (provider.synced ? true : undefined), { timeoutMs, intervalMs: 5 });
    },
    reach: (length, timeoutMs = 120_000) => {
      if (text.length >= length) return Promise.resolve(performance.now());
      return new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${room}: ${text.length} of ${length} characters after ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ length, resolve: (t) => {
          clearTimeout(timer);
          resolve(t);
        } });
      });
    },
    destroy: () => {
      provider.destroy();
      doc.destroy();
    },
  };
}

/**
 * Types `n` single characters at the end of the text, each its own
 * transaction (one y-websocket message each, as keystrokes are), letting
 * the socket flush every `burst` edits.
 */
export async function type(app: App, n: number, burst = 50): Promise<void> {
  for (let i = 0; i < n; i++) {
    app.text.insert(app.text.length, 'x');
    if (i % burst === burst - 1) await new Promise<void>((r) => setImmediate(r));
  }
}
