import { resolve } from 'node:path';
import WebSocket from 'ws';
import { spawnServer } from './proc.js';
import { median, quantile, sig } from './stats.js';
import { sleep } from './wait.js';

const SCRIPT = resolve(import.meta.dirname, 'relay-server.mjs');

export interface RelayHops {
  readonly samples: number;
  /** ms from one client's send to the other client's receipt through the relay: two loopback hops. */
  readonly twoHopsP50Ms: number;
  readonly twoHopsP99Ms: number;
}

/**
 * Two loopback WebSocket hops with nothing done between them: a client in
 * this process sends a 20-byte message to a bare relay in a child process
 * (relay-server.mjs), which passes it to a second client here. One message
 * at a time, 10 ms apart, as row 2's unloaded edits are.
 */
export async function measureRelayHops(samples = 300): Promise<RelayHops> {
  const { server, ready: port } = await spawnServer([SCRIPT], {
    what: 'relay',
    ready: (line) => {
      if (!line.startsWith('{')) return undefined;
      const l = JSON.parse(line) as { msg?: string; port?: number };
      return l.msg === 'listening' ? l.port! : undefined;
    },
  });
  const open = async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false });
    await new Promise((res, rej) => ws.once('open', res).once('error', rej));
    return ws;
  };
  const sockets: WebSocket[] = [];
  try {
    sockets.push(await open(), await open());
    const [from, to] = sockets as [WebSocket, WebSocket];
    const message = Buffer.alloc(20, 1);
    const out: number[] = [];
    for (let k = 0; k < samples + 20; k++) {
      await sleep(10);
      const arrived = new Promise<number>((res) => to.once('message', () => res(performance.now())));
      const t0 = performance.now();
      from.send(message);
      const ms = (await arrived) - t0;
      if (k >= 20) out.push(ms);
    }
    return { samples, twoHopsP50Ms: sig(median(out)), twoHopsP99Ms: sig(quantile(out, 0.99)) };
  } finally {
    for (const ws of sockets) ws.terminate();
    await server.stop();
  }
}
