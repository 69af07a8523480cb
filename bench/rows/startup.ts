import { cp, mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureFixture, type Fixture } from '../fixture/build.js';
import { startBaseline } from '../lib/baseline.js';
import { connectApp, type App } from '../lib/clients.js';
import { line, type RowResult } from '../lib/report.js';
import { fmt, mib, ratio, sig } from '../lib/stats.js';
import { startNode, type BenchNode } from '../lib/tessera.js';
import { sleep } from '../lib/wait.js';
import { profileDir, type BenchContext } from './context.js';

export interface StartupRun {
  /** ms from spawn to the first successful `GET /healthz` (baseline: any GET). */
  readonly healthzMs: number;
  /** ms from spawn until the first document has been read in full. */
  readonly firstReadMs: number;
  /** Tessera: ms for reading a document that has no snapshot (every envelope replayed). */
  readonly replayReadMs?: number;
  readonly rssMiB: number;
}

export interface MemoryRun {
  readonly stored: number;
  readonly inUse: number;
  /** RSS right after start, and with `inUse` documents open in apps. */
  readonly idleMiB: number;
  readonly inUseMiB: number;
  /** Tessera: documents loaded in memory at the end (from /metrics). */
  readonly loaded?: number;
}

/** A working copy of a cached folder, so every run starts from the same files. */
export async function copyOf(ctx: BenchContext, dir: string, name: string): Promise<string> {
  const to = join(await mkdtemp(join(ctx.tmp, `${name}-`)), 'data');
  await cp(dir, to, { recursive: true });
  return to;
}

async function getOk(url: string, token?: string): Promise<Response> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  return res;
}

/** GETs a document and checks it holds every edit (the fixture is what the node thinks it is). */
async function readDoc(node: BenchNode, f: Fixture, name: string): Promise<void> {
  const body = (await (await getOk(`${node.api}/v1/docs/${encodeURIComponent(name)}`, node.token)).json()) as { t?: string };
  if (body.t?.length !== f.perDoc) throw new Error(`${name} read back with ${body.t?.length ?? 0} of ${f.perDoc} characters: rebuild the fixture (rm -r bench/.cache)`);
}

async function tesseraStartup(ctx: BenchContext, f: Fixture): Promise<StartupRun> {
  const dir = await copyOf(ctx, f.nodeDir, 'startup');
  const cpuProfDir = await profileDir(ctx, 'startup-tessera');
  const t0 = performance.now();
  const node = await startNode(dir, 'fixture', { cpuProfDir });
  try {
    await getOk(`${node.api}/healthz`);
    const healthz = performance.now() - t0;
    await readDoc(node, f, f.names[0]!);
    const firstRead = performance.now() - t0;
    const t1 = performance.now();
    await readDoc(node, f, f.names[1]!);
    const replay = performance.now() - t1;
    return { healthzMs: sig(healthz), firstReadMs: sig(firstRead), replayReadMs: sig(replay), rssMiB: sig(mib(await node.server.rss())) };
  } finally {
    await node.server.stop();
  }
}

async function baselineStartup(ctx: BenchContext, f: Fixture): Promise<StartupRun> {
  const dir = await copyOf(ctx, f.leveldbDir, 'startup-ydb');
  const t0 = performance.now();
  const base = await startBaseline({ persistenceDir: dir });
  let app: App | undefined;
  try {
    await getOk(base.http);
    const healthz = performance.now() - t0;
    app = connectApp(base.url, f.names[0]!);
    await app.reach(f.perDoc, 60_000);
    const firstRead = performance.now() - t0;
    return { healthzMs: sig(healthz), firstReadMs: sig(firstRead), rssMiB: sig(mib(await base.server.rss())) };
  } finally {
    app?.destroy();
    await base.server.stop();
  }
}

/** Opens `inUse` documents in apps (each until it holds every edit), then measures RSS. */
async function withDocsInUse(f: Fixture, inUse: number, url: string, token: string | undefined, rss: () => Promise<number | undefined>): Promise<{ idle: number; busy: number; apps: App[] }> {
  await sleep(500);
  const idle = mib(await rss());
  const apps: App[] = [];
  for (let i = 0; i < inUse; i += 25) {
    const group = f.names.slice(i, Math.min(i + 25, inUse)).map((n) => connectApp(url, n, token));
    apps.push(...group);
    await Promise.all(group.map((a) => a.reach(f.perDoc, 60_000)));
  }
  await sleep(500);
  return { idle, busy: mib(await rss()), apps };
}

async function tesseraMemory(ctx: BenchContext, f: Fixture, inUse: number): Promise<MemoryRun> {
  const node = await startNode(await copyOf(ctx, f.nodeDir, 'memory'), 'memory');
  try {
    const { idle, busy, apps } = await withDocsInUse(f, inUse, node.yjs, node.token, () => node.server.rss());
    const metrics = await (await getOk(`${node.api}/metrics`, node.token)).text();
    const loaded = Number(/^tessera_documents\{where="loaded"\} (\d+)/m.exec(metrics)?.[1] ?? NaN);
    for (const a of apps) a.destroy();
    return { stored: f.docs, inUse, idleMiB: sig(idle), inUseMiB: sig(busy), loaded };
  } finally {
    await node.server.stop();
  }
}

async function baselineMemory(ctx: BenchContext, f: Fixture, inUse: number): Promise<MemoryRun> {
  const base = await startBaseline({ persistenceDir: await copyOf(ctx, f.leveldbDir, 'memory-ydb') });
  try {
    const { idle, busy, apps } = await withDocsInUse(f, inUse, base.url, undefined, () => base.server.rss());
    for (const a of apps) a.destroy();
    return { stored: f.docs, inUse, idleMiB: sig(idle), inUseMiB: sig(busy) };
  } finally {
    await base.server.stop();
  }
}

/**
 * Row 5: start-up of a node whose store holds many envelopes (a cached
 * fixture), and resident memory with many documents stored and few in use,
 * against the y-websocket server with y-leveldb holding the same documents.
 */
export async function startupRow(ctx: BenchContext): Promise<RowResult> {
  const o = ctx.opts;
  const big = await ensureFixture(ctx.cache, o.fixtureDocs, Math.round(o.fixtureEnvelopes / o.fixtureDocs), ctx.say);
  const small = await ensureFixture(ctx.cache, Math.max(1, Math.round(o.memoryDocs / 10)), 10, ctx.say);
  const many = await ensureFixture(ctx.cache, o.memoryDocs, 10, ctx.say);
  ctx.say(`row 5: start-up on ${big.envelopes.toLocaleString('en-US')} envelopes`);
  const t = await tesseraStartup(ctx, big);
  const b = await baselineStartup(ctx, big);
  ctx.say(`row 5: memory with ${small.docs} and ${many.docs} documents stored, ${o.memoryInUse} in use`);
  const memSmall = await tesseraMemory(ctx, small, o.memoryInUse);
  const memMany = await tesseraMemory(ctx, many, o.memoryInUse);
  const memBase = await baselineMemory(ctx, many, o.memoryInUse);
  const growth = sig(ratio(memMany.inUseMiB, memSmall.inUseMiB));
  const full = big.envelopes >= 1_000_000;
  const size = `${big.envelopes.toLocaleString('en-US')} envelopes / ${big.docs} docs`;
  const notes = [
    `row 5 fixture: ${size}${big.envelopes < 1_000_000 ? ' (fewer than the 1,000,000 of a default run)' : ''}, signed with signEnvelope (node:crypto) and written straight into LevelDB through the Store API (envelopeOps) with its vectors, overlap entries and a snapshot for every other document; ${big.built ? `built in this run in ${big.buildSeconds} s` : `taken from bench/.cache (built in ${big.buildSeconds} s)`}`,
  ];
  return {
    key: 'startup',
    title: '5. Start-up and memory',
    data: {
      fixture: { envelopes: big.envelopes, docs: big.docs, perDoc: big.perDoc, built: big.built, buildSeconds: big.buildSeconds, method: 'signEnvelope (node:crypto) on worker threads, written through Store/envelopeOps with vectors, overlap entries and snapshots of even documents; y-leveldb holds each document as one update' },
      tessera: t,
      baselineLeveldb: b,
      memory: { tessera: [memSmall, memMany], baselineLeveldb: memBase, growthFrom10xStored: growth },
      target: { healthzMs: 3000 },
    },
    lines: [
      line('5 start-up', `start → /healthz, ${size}`, fmt(t.healthzMs, 'ms'), fmt(b.healthzMs, 'ms'), `${fmt(sig(ratio(t.healthzMs, b.healthzMs)))}×`, full ? '< 3 s' : '< 3 s (at 1M; not run)', full ? t.healthzMs < 3000 : undefined),
      line('', 'start → first document read in full', fmt(t.firstReadMs, 'ms'), fmt(b.firstReadMs, 'ms'), `${fmt(sig(ratio(t.firstReadMs, b.firstReadMs)))}×`),
      line('', `read of a doc without snapshot (${big.perDoc} envelopes replayed)`, fmt(t.replayReadMs, 'ms'), ''),
      line('', `RSS, ${memSmall.stored} docs stored, ${memSmall.inUse} in use`, fmt(memSmall.inUseMiB, 'MiB'), ''),
      line('', `RSS, ${memMany.stored} docs stored, ${memMany.inUse} in use`, fmt(memMany.inUseMiB, 'MiB'), fmt(memBase.inUseMiB, 'MiB'), `${fmt(sig(ratio(memMany.inUseMiB, memBase.inUseMiB)))}×`, `bounded by in use`, growth <= 1.25),
      line('', `RSS growth for 10× the docs stored`, `${fmt(growth)}×`, ''),
    ],
    notes,
  };
}
