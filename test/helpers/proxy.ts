/**
 * A TCP proxy a test controls, to put a link between two nodes that the test
 * can cut and heal: it listens on 127.0.0.1 port 0 and forwards every
 * connection to a target. `cut()` destroys the live connections and refuses
 * new ones (accepted, then destroyed at once) until `heal()`.
 */
import { createConnection, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

export interface TcpProxy {
  readonly port: number;
  /** `ws://127.0.0.1:<port>`: what a dialler's peers entry points at. */
  readonly url: string;
  /** Connections accepted and forwarded so far (refused ones not counted). */
  readonly forwarded: number;
  /** Live forwarded connections. */
  readonly open: number;
  readonly isCut: boolean;
  /** Destroys every live connection and refuses new ones. */
  cut(): void;
  /** Forwards new connections again. */
  heal(): void;
  close(): Promise<void>;
}

export async function tcpProxy(target: { host?: string; port: number }): Promise<TcpProxy> {
  const pairs = new Set<[Socket, Socket]>();
  let cut = false;
  let forwarded = 0;
  const server = createServer((client) => {
    client.on('error', () => undefined);
    if (cut) {
      client.destroy();
      return;
    }
    forwarded++;
    const upstream = createConnection({ host: target.host ?? '127.0.0.1', port: target.port });
    upstream.on('error', () => undefined);
    const pair: [Socket, Socket] = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('close', end);
    upstream.on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const destroyAll = () => {
    for (const [a, b] of [...pairs]) {
      a.destroy();
      b.destroy();
    }
    pairs.clear();
  };
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= new Promise<void>((resolve) => {
      cut = true;
      destroyAll();
      server.close(() => resolve());
    }));
  onTestFinished(close);
  return {
    port,
    url: `ws://127.0.0.1:${port}`,
    get forwarded() {
      return forwarded;
    },
    get open() {
      return pairs.size;
    },
    get isCut() {
      return cut;
    },
    cut() {
      cut = true;
      destroyAll();
    },
    heal() {
      cut = false;
    },
    close,
  };
}
