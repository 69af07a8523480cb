import { appendFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of a V8 `.cpuprofile` (what `node --cpu-prof` writes) that this reads. */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Hot {
  readonly fn: string;
  readonly where: string;
  readonly ms: number;
  readonly share: number;
  /** For self time: the nearest Tessera function on the stack (who to blame). */
  readonly via?: string;
}

export interface ProfileSummary {
  readonly file: string;
  readonly totalMs: number;
  readonly idleMs: number;
  readonly gcMs: number;
  /** Functions by self time. */
  readonly self: Hot[];
  /** Tessera's own functions (dist/) by inclusive time: what they and their callees cost. */
  readonly inclusive: Hot[];
}

const ROOT = resolve(import.meta.dirname, '../..');

/** Whether a frame is Tessera's own compiled code (dist/ of the build that ran). */
function isOwn(url: string, distDir: string): boolean {
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  return path.startsWith(distDir);
}

function where(url: string, line: number): string {
  if (!url) return '';
  const path = url.startsWith('file://') ? fileURLToPath(url) : url;
  const rel = path.startsWith(ROOT) ? relative(ROOT, path) : path;
  return `${rel.replace(/^node_modules\//, '')}:${line + 1}`;
}

/** Self and inclusive time per function of one CPU profile. */
/**
 * A stretch of time to summarize alone, in microseconds of the monotonic
 * clock (`process.hrtime`): the clock V8 stamps its samples with, the same
 * in every process of the machine.
 */
export type Window = readonly [fromUs: number, toUs: number];

/** Now on the clock of CPU profile samples, in microseconds. */
export const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

export async function summarize(file: string, distDir: string, top = 12, windows?: readonly Window[]): Promise<ProfileSummary> {
  const p = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  let at = p.startTime;
  const inWindow = (us: number) => !windows || windows.some(([a, b]) => us >= a && us <= b);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const key = (id: number) => {
    const f = byId.get(id)!.callFrame;
    return `${f.functionName || '(anonymous)'}\u0000${where(f.url, f.lineNumber)}`;
  };
  const own = (id: number) => isOwn(byId.get(id)!.callFrame.url, distDir);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const via = new Map<string, Map<string, number>>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i] ?? 0;
    if (!inWindow(at)) continue;
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    total += dt;
    const id = p.samples[i]!;
    self.set(key(id), (self.get(key(id)) ?? 0) + dt);
    const seen = new Set<string>();
    let blamed = false;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const k = key(at);
      if (!own(at) || seen.has(k)) continue;
      if (!blamed) {
        blamed = true;
        const m = via.get(key(id)) ?? via.set(key(id), new Map()).get(key(id))!;
        m.set(k, (m.get(k) ?? 0) + dt);
      }
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + dt);
    }
  }
  const list = (m: Map<string, number>, skip: (fn: string) => boolean) =>
    [...m]
      .filter(([k]) => !skip(k.split('\u0000')[0]!))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, ms]) => {
        const [fn, at] = k.split('\u0000') as [string, string];
        const blame = [...(via.get(k) ?? [])].sort((a, b) => b[1] - a[1])[0]?.[0].replace('\u0000', ' ');
        return { fn, where: at, ms: Math.round(ms), share: Math.round((ms / total) * 1000) / 10, ...(blame && !blame.startsWith(`${fn} `) ? { via: blame } : {}) };
      });
  const named = (fn: string) => [...self].filter(([k]) => k.startsWith(`${fn}\u0000`)).reduce((s, [, v]) => s + v, 0);
  return {
    file,
    totalMs: Math.round(total),
    idleMs: Math.round(named('(idle)')),
    gcMs: Math.round(named('(garbage collector)')),
    self: list(self, (fn) => fn === '(idle)'),
    inclusive: list(incl, () => false),
  };
}

export function renderSummary(s: ProfileSummary): string {
  const out = [`${relative(process.cwd(), s.file)}: ${s.totalMs} ms sampled, ${s.idleMs} ms idle, ${s.gcMs} ms GC`, '  self time:'];
  for (const h of s.self) out.push(`    ${String(h.ms).padStart(6)} ms ${String(h.share).padStart(5)}%  ${h.fn}  ${h.where}${h.via ? `  ← ${h.via}` : ''}`);
  out.push('  inclusive time of Tessera functions:');
  for (const h of s.inclusive) out.push(`    ${String(h.ms).padStart(6)} ms ${String(h.share).padStart(5)}%  ${h.fn}  ${h.where}`);
  return out.join('\n');
}

/** Notes a measured stretch in a profile folder (windows.jsonl), for the summary of the measured part alone. */
export async function markWindow(dir: string | undefined, window: Window): Promise<void> {
  if (dir) await appendFile(join(dir, 'windows.jsonl'), JSON.stringify(window) + '\n');
}

/** The measured stretches noted in a profile folder, if any. */
export async function readWindows(dir: string): Promise<Window[] | undefined> {
  const text = await readFile(join(dir, 'windows.jsonl'), 'utf8').catch(() => '');
  const lines = text.split('\n').filter(Boolean);
  return lines.length ? lines.map((l) => JSON.parse(l) as Window) : undefined;
}
