/**
 * The soak's revocation scenarios (DESIGN.md §2, §7, §10), run alongside its
 * load against the same mesh A, B, C:
 *
 * 1. Revocation during a partition: D (in every peers file) and G (admitted
 *    by an authority grant) are cut off with E, an honest node, and go on
 *    writing through their APIs. Meanwhile D is revoked through the peers
 *    files (`tessera peers revoke` on A, the entry copied to B, C, E) and G
 *    by the authority (`tessera revoke`, loaded on A alone), each with the
 *    cutoff of what A holds. After the heal: nothing beyond a cutoff on A, B,
 *    C, E; everything up to it the same there (JSON and state digest); D
 *    and G refused with 4011 by every honest node.
 * 2. No laundering: a y-websocket app on E that holds content since dropped
 *    comes back twice (during the partition, and after the heal once G's
 *    revocation has reached E) with an offline edit: the dropped part is
 *    refused (4409), the edit goes through everywhere.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cutoff } from '../../src/config/peers.js';
import { docHash } from '../../src/trust/trust.js';
import { writeFileAtomic } from '../../src/util/files.js';
import { startCutOffSide, type CutOffSide } from './cut-off-side.js';
import { KeyWriter } from './key-writer.js';
import { editPeersFile, reload, tessera, tryJson, viewDoc, type DocView, type MeshNode, type PeersFile } from './mesh-node.js';
import { OfflineApp } from './offline-app.js';
import { emptyReport, revocationPassed, type RevocationReport } from './revocation-report.js';
import { sleep, until } from './wait.js';

const DOC = 'soak/rev/doc';
const GLOB = 'soak/rev/**';
const REVOKED = 4011;

export interface RevocationOptions {
  readonly root: string;
  /** A, B, C: A is never killed (the CLI and the authority revocation go through it); B and C may be. */
  readonly mesh: readonly [MeshNode, MeshNode, MeshNode];
  /** tessera.json keys for the nodes the scenario starts. */
  readonly config: Record<string, unknown>;
  /** Node id → name, for the soak's log of closed sessions. */
  readonly names: Map<string, string>;
  readonly say: (text: string) => void;
}

/** Runs both scenarios; never throws (a failure is in the report's `error`). */
export async function revocationScenario(opts: RevocationOptions): Promise<RevocationReport> {
  const report = emptyReport();
  const app = new OfflineApp(DOC);
  const started = performance.now();
  let side: CutOffSide | undefined;
  try {
    side = await startCutOffSide(opts.root, opts.mesh, opts.config, GLOB);
    for (const n of [side.d, side.e, side.g]) {
      opts.names.set(n.pair.id, n.name);
      report.dirs.push({ name: n.name, dir: n.dir });
    }
    await new Scenario(opts, side, app, report).run();
  } catch (err) {
    report.error = err instanceof Error ? err.message.split('\n')[0]! : String(err);
  } finally {
    app.destroy();
    await side?.stop();
  }
  opts.say(`revocation scenarios ${revocationPassed(report) ? 'passed' : 'FAILED'} in ${Math.round((performance.now() - started) / 1000)} s`);
  return report;
}

/** Resolves true once `check` holds, false after `timeoutMs` (a check that failed, not a broken run). */
async function eventually(what: string, check: () => Promise<boolean | undefined> | boolean | undefined, timeoutMs = 60_000): Promise<boolean> {
  return until(what, async () => (await check()) || undefined, { timeoutMs, intervalMs: 250 }).catch(() => false);
}

/** A JSON route, asked again until the node answers (B and C may be restarting); undefined after a minute. */
async function ask<T>(node: MeshNode, path: string): Promise<T | undefined> {
  return until(`${node.name} answered ${path}`, () => tryJson<T>(node, path, 30_000), { timeoutMs: 60_000, intervalMs: 250 }).catch(() => undefined);
}

type Status = { peers: { id: string; state: string }[] };

const seqIn = (cutoff: Cutoff, node: MeshNode) => Math.max(0, ...Object.entries(cutoff[docHash(DOC)] ?? {}).filter(([feed]) => feed.startsWith(`${node.pair.id}:`)).map(([, s]) => s));
const authored = (v: DocView | undefined, node: MeshNode) => v?.authors.find((a) => a.origin === node.pair.id)?.envelopes ?? 0;

class Scenario {
  readonly #o: RevocationOptions;
  readonly #side: CutOffSide;
  readonly #app: OfflineApp;
  readonly #r: RevocationReport;
  readonly #honest: MeshNode[];
  readonly #d: KeyWriter;
  readonly #g: KeyWriter;
  readonly #writers: KeyWriter[];

  constructor(o: RevocationOptions, side: CutOffSide, app: OfflineApp, report: RevocationReport) {
    this.#o = o;
    this.#side = side;
    this.#app = app;
    this.#r = report;
    this.#honest = [...o.mesh, side.e];
    report.honest = this.#honest.map((n) => n.name);
    this.#d = new KeyWriter(side.d, DOC, 'd');
    this.#g = new KeyWriter(side.g, DOC, 'g');
    this.#writers = [this.#d, this.#g, new KeyWriter(o.mesh[0], DOC, 'a'), new KeyWriter(side.e, DOC, 'e')];
  }

  async run(): Promise<void> {
    const [a] = this.#o.mesh;
    for (const w of this.#writers) await w.writeMany(3);
    await this.#app.connect(this.#side.e);
    await until('A holds what D and G wrote', async () => {
      const v = await viewDoc(a, DOC);
      return (authored(v, this.#side.d) === this.#d.lastSeq && authored(v, this.#side.g) === this.#g.lastSeq) || undefined;
    }, { timeoutMs: 60_000, intervalMs: 250 });
    this.#o.say('revocation scenario: partition; D and G write on while they are revoked');
    const cutAt = performance.now();
    for (const l of this.#side.links) l.cut();
    for (const w of this.#writers) w.start(w === this.#d || w === this.#g ? 150 : 400);
    await sleep(1500);
    await this.#revoke();
    await this.#launder(this.#side.e, 'app1');
    await sleep(2000);
    for (const w of this.#writers) await w.stop();
    const healAt = performance.now();
    this.#r.partitionS = (healAt - cutAt) / 1000;
    for (const l of this.#side.links) l.heal();
    this.#o.say('revocation scenario: healed; checking cutoffs, convergence and refusals');
    for (const [w, n] of [[this.#d, this.#r.revoked[0]!], [this.#g, this.#r.revoked[1]!]] as const) {
      n.written = w.acked.size;
      n.duringPartition = w.ackedBetween(cutAt, healAt);
      n.beyondCutoff = w.keys(n.cutoff, 'beyond').length;
    }
    await eventually('E dropped what G wrote beyond its cutoff', async () => authored(await viewDoc(this.#side.e, DOC), this.#side.g) === this.#r.revoked[1]!.cutoff);
    await this.#launder(this.#side.e, 'app2');
    await this.#refusals();
    await this.#converge();
  }

  /** Both cutoffs from what A holds; D's entry to B, C, E at once, G's revocation to A alone; waits until E has dropped D's writes. */
  async #revoke(): Promise<void> {
    const [a, b, c] = this.#o.mesh;
    const { d, e, g } = this.#side;
    const dCut = JSON.parse(await tessera(['peers', 'revoke', d.name, '--data', a.dir])) as Cutoff;
    const gCut = (await ask<{ cutoff: Cutoff }>(a, `/v1/cutoff?node=${g.pair.id}`))?.cutoff;
    if (!gCut) throw new Error('A did not answer /v1/cutoff for G');
    this.#r.revoked[0]!.cutoff = seqIn(dCut, d);
    this.#r.revoked[1]!.cutoff = seqIn(gCut, g);
    // The app on E copies what D and G write beyond their cutoffs, and goes offline before E drops it.
    await until('the app on E holds writes of D and G beyond their cutoffs', () => [this.#d, this.#g].every((w, i) => w.keys(this.#r.revoked[i]!.cutoff, 'beyond').some((k) => this.#app.map.has(k))) || undefined, { timeoutMs: 30_000 });
    this.#app.disconnect();
    const entryOf = (f: PeersFile) => f.peers.find((p) => p.id === d.pair.id)!;
    const revoked = entryOf(JSON.parse(await readFile(join(a.dir, 'peers.json'), 'utf8')) as PeersFile).revoked;
    for (const n of [b, c, e]) await editPeersFile(n, (f) => void (entryOf(f).revoked = revoked));
    const cutFile = join(this.#o.root, 'g-cutoff.json');
    await writeFile(cutFile, JSON.stringify(gCut));
    const revocation = await tessera(['revoke', '--authority', this.#side.authorityFile, '--node', g.pair.id, '--cutoff', cutFile]);
    await writeFileAtomic(join(a.dir, 'grants.json'), JSON.stringify({ grants: [], revocations: [revocation] }));
    reload(a);
    await until('E dropped what D wrote beyond its cutoff', async () => (authored(await viewDoc(e, DOC), d) === this.#r.revoked[0]!.cutoff) || undefined, { timeoutMs: 60_000, intervalMs: 250 });
  }

  /** The app edits offline and comes back to `node` with everything it holds; its edit must reach every honest node. */
  async #launder(node: MeshNode, key: string): Promise<void> {
    this.#r.laundering.push(await this.#app.comeBack(node, key, `honest edit ${key}`));
    this.#r.honestEdits++;
  }

  /** D and G must have been refused with 4011 by every honest node, and hold no session with any. */
  async #refusals(): Promise<void> {
    for (const [i, node] of [this.#side.d, this.#side.g].entries()) {
      const report = this.#r.revoked[i]!;
      const lines = this.#side.codes.get(node)!;
      const refusedBy = () => this.#honest.filter((h) => lines.some((l) => l.peer === h.pair.id && l.code === REVOKED && l.msg.startsWith('peer refused us'))).map((h) => h.name);
      await eventually(`every honest node refused ${node.name}`, () => refusedBy().length === this.#honest.length);
      report.refusedBy = refusedBy();
      const s = await ask<Status>(node, '/v1/status');
      report.connectedTo = this.#honest.filter((h) => s?.peers.some((p) => p.id === h.pair.id && p.state === 'connected')).map((h) => h.name);
    }
    for (const h of this.#honest) {
      const shown = await eventually(`${h.name} shows D revoked`, async () => (await tryJson<Status>(h, '/v1/status'))?.peers.some((p) => p.id === this.#side.d.pair.id && p.state === 'revoked'), 30_000);
      if (shown) this.#r.showRevoked.push(h.name);
    }
  }

  /** Waits until the honest nodes agree and hold every kept key; then counts anything beyond a cutoff and verifies their stores. */
  async #converge(): Promise<void> {
    const kept = new Set(this.#writers.flatMap((w, i) => (i < 2 ? w.keys(this.#r.revoked[i]!.cutoff, 'within') : [...w.acked.keys()])));
    let views: (DocView | undefined)[] = [];
    this.#r.converged = await eventually('the honest nodes converged', async () => {
      views = await Promise.all(this.#honest.map((h) => viewDoc(h, DOC)));
      const keys = views.map((v) => new Set(Object.keys(v?.json.m ?? {})));
      return views.every((v) => v && v.digest === views[0]!.digest && JSON.stringify(v.json) === JSON.stringify(views[0]!.json)) && keys.every((k) => [...kept].every((key) => k.has(key)));
    }, 90_000);
    const digests = new Set(views.map((v) => v?.digest.slice(0, 12) ?? 'unreadable'));
    this.#r.convergence = `${[...digests].join(' / ')} on ${this.#r.honest.join(', ')}; ${Object.keys(views[0]?.json.m ?? {}).length} keys, ${kept.size} kept writes expected`;
    const appKeys = ['app1', 'app2'].slice(0, this.#r.honestEdits);
    this.#r.honestPassed = appKeys.filter((k) => views.every((v) => v?.json.m?.[k] !== undefined)).length;
    for (const [i, h] of this.#honest.entries()) await this.#countBeyond(h, views[i]);
  }

  /** Adds to the report what `node` holds beyond D's and G's cutoffs, and its verify result. */
  async #countBeyond(node: MeshNode, view: DocView | undefined): Promise<void> {
    const docs = await ask<{ docs: { name: string; vector: Record<string, number> }[] }>(node, '/v1/docs');
    const vector = docs?.docs.find((x) => x.name === DOC)?.vector;
    if (!vector || !view) {
      this.#r.verify.push(`${node.name} unreachable`);
      return;
    }
    for (const [i, w] of [this.#d, this.#g].entries()) {
      const cut = this.#r.revoked[i]!.cutoff;
      const counted = Math.max(0, ...Object.entries(vector).filter(([f]) => f.startsWith(`${w.node.pair.id}:`)).map(([, s]) => s));
      this.#r.beyond.envelopes += Math.max(0, counted - cut, authored(view, w.node) - cut);
      this.#r.beyond.keys += w.keys(cut, 'beyond').filter((k) => view.json.m?.[k] !== undefined).length;
      this.#r.beyond.clocks += Math.max(0, (view.clocks.get(w.clientId) ?? 0) - w.clockAt(cut));
    }
    // A running node verifies a snapshot of its store: documents written meanwhile show no false problems.
    const report = await ask<{ problems: unknown[] }>(node, '/v1/verify');
    this.#r.verify.push(`${node.name} ${!report ? 'unreachable' : report.problems.length ? `FAILED (${report.problems.length} problems)` : 'ok'}`);
  }
}
