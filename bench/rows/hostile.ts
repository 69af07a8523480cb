import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import * as decoding from 'lib0/decoding';
import * as encoding from 'lib0/encoding';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { atStart, deletions, valuesInside } from '../../test/helpers/updates.js';
import { startBaseline } from '../lib/baseline.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, ratio, sig } from '../lib/stats.js';
import { createNodeDir, startNode, stopAll, type BenchNode } from '../lib/tessera.js';
import type { BenchContext } from './context.js';

/**
 * Row 7: updates any writer may send that cost Yjs far more than their
 * size. Each is taken in by the y-websocket server (as an app's update on
 * its socket) and by a Tessera node (POSTed by an app): the time until the
 * server has taken it in (answered the next message; for Tessera, the POST's
 * answer, which comes once the update is durable and applied, or refused),
 * and the longest the server left an HTTP request waiting meanwhile.
 */

interface Case {
  readonly name: string;
  /** Sent first, not timed. */
  readonly setup: Uint8Array[];
  readonly attack: Uint8Array;
}

/** Client 5's one item of `n` numbers in root array "a". */
function numbers(n: number): Uint8Array {
  const d = new Y.Doc();
  d.clientID = 5;
  d.getArray('a').push(Array.from({ length: n }, (_, i) => i % 100));
  return Y.encodeStateAsUpdate(d);
}

/** A Y.Text in root array "a" with a bold mark and `n` characters that never join (each typed at the start); and one deletion of them all. */
function formattedText(n: number): Case {
  const writer = new Y.Doc();
  writer.clientID = 2;
  const text = new Y.Text();
  writer.getArray('a').insert(0, [text]);
  text.insert(0, 'x', { bold: true });
  for (let i = 0; i < n; i++) text.insert(0, 'a');
  const setup = Y.encodeStateAsUpdate(writer);
  const sv = Y.encodeStateVector(writer);
  text.delete(0, n);
  return { name: `one deletion of ${n.toLocaleString('en-US')} characters of a formatted text`, setup: [setup], attack: Y.encodeStateAsUpdate(writer, sv) };
}

function cases(): Case[] {
  return [
    { name: '2,000 values put inside an item of 200,000, one update', setup: [], attack: valuesInside(200_000, 2_000) },
    { name: '1,024 deletions across an item of 500,000 values', setup: [numbers(500_000)], attack: deletions(5, Array.from({ length: 1024 }, (_, i) => [i * 488, 1])) },
    formattedText(16_384),
    { name: '4,096 items of one client at one place, then 4,096 of another', setup: [atStart([2, 4096])], attack: atStart([3, 4096]) },
  ];
}

interface Taken {
  /** ms until the server had taken the update in. */
  readonly ms: number;
  /** The longest an HTTP request to the server waited meanwhile, ms. */
  readonly stallMs: number;
  readonly outcome: string;
}

/** Times `take` while asking the server `probe` one request after another: the longest wait is how long it stopped answering. */
async function timed(probe: string, take: () => Promise<string>): Promise<Taken> {
  let stall = 0;
  let done = false;
  const probing = (async () => {
    while (!done) {
      const t = performance.now();
      await fetch(probe).then((r) => r.arrayBuffer()).catch(() => undefined);
      stall = Math.max(stall, performance.now() - t);
    }
  })();
  const t0 = performance.now();
  const outcome = await take();
  const ms = performance.now() - t0;
  done = true;
  await probing;
  return { ms: sig(ms, 3), stallMs: sig(stall, 3), outcome };
}

const syncUpdate = (u: Uint8Array) => {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 2);
  encoding.writeVarUint8Array(e, u);
  return encoding.toUint8Array(e);
};
const syncStep1 = () => {
  const e = encoding.createEncoder();
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint(e, 0);
  encoding.writeVarUint8Array(e, Y.encodeStateVector(new Y.Doc()));
  return encoding.toUint8Array(e);
};

/** An app's socket to a y-websocket room: `send` writes an update and resolves once the server answered the sync step 1 sent after it. */
async function baselineApp(url: string, room: string) {
  const ws = new WebSocket(`${url}/${room}`, { perMessageDeflate: false });
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const answers: (() => void)[] = [];
  ws.on('message', (data: Buffer) => {
    const d = decoding.createDecoder(new Uint8Array(data));
    if (decoding.readVarUint(d) === 0 && decoding.readVarUint(d) === 1) answers.shift()?.();
  });
  return {
    async send(u: Uint8Array): Promise<string> {
      const answered = new Promise<void>((resolve) => answers.push(resolve));
      ws.send(syncUpdate(u));
      ws.send(syncStep1());
      await answered;
      return 'taken';
    },
    close: () => ws.terminate(),
  };
}

async function post(node: BenchNode, doc: string, u: Uint8Array): Promise<string> {
  const res = await fetch(`${node.api}/v1/docs/${encodeURIComponent(doc)}/updates`, { method: 'POST', headers: { authorization: `Bearer ${node.token}`, 'content-type': 'application/octet-stream' }, body: u });
  const body = (await res.json()) as { error?: { message: string } };
  return res.status === 200 ? 'taken' : `refused (${res.status}: ${body.error?.message ?? ''})`;
}

export async function hostileRow(ctx: BenchContext): Promise<RowResult> {
  const all = cases();
  const results: { name: string; bytes: number; baseline: Taken; tessera: Taken }[] = [];
  for (const [i, c] of all.entries()) {
    ctx.say(`row 7: ${c.name} (${c.attack.byteLength.toLocaleString('en-US')} bytes): the y-websocket server, then a Tessera node`);
    const base = await startBaseline();
    let baseline: Taken;
    try {
      const app = await baselineApp(base.url, `hostile-${i}`);
      for (const u of c.setup) await app.send(u);
      baseline = await timed(base.http, () => app.send(c.attack));
      app.close();
    } finally {
      await base.server.stop();
    }
    const { dir } = await createNodeDir(await mkdtemp(join(ctx.tmp, 'hostile-')), 'n', {});
    const node = await startNode(dir, 'n');
    let tessera: Taken;
    try {
      for (const u of c.setup) await post(node, `hostile/${i}`, u);
      tessera = await timed(`${node.api}/healthz`, () => post(node, `hostile/${i}`, c.attack));
    } finally {
      await stopAll([node]);
    }
    results.push({ name: c.name, bytes: c.attack.byteLength, baseline, tessera });
  }
  const lines = results.flatMap((r, i) => [
    line(i === 0 ? '7 hostile' : '', `${r.name} (${r.bytes.toLocaleString('en-US')} B)`, `${fmt(r.tessera.ms, 'ms')}, ${r.tessera.outcome}`, `${fmt(r.baseline.ms, 'ms')}`, `${fmt(sig(ratio(r.tessera.ms, r.baseline.ms)))}× the time`),
    line('', '  longest wait of an HTTP request meanwhile', fmt(r.tessera.stallMs, 'ms'), fmt(r.baseline.stallMs, 'ms')),
  ]);
  return { key: 'hostile', title: '7. Hostile updates', data: { cases: results }, lines, notes: [] };
}
