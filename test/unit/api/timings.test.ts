import { afterEach, describe, expect, it, vi } from 'vitest';
import { Registry } from 'prom-client';
import { Timings } from '../../../src/api/routes/metrics.js';

/** count, sum and the `le` buckets of one histogram in Prometheus text. */
async function read(registry: Registry, name: string) {
  const text = await registry.metrics();
  const value = (suffix: string) => Number(new RegExp(`^${name}_${suffix} (\\S+)$`, 'm').exec(text)?.[1]);
  const buckets = Object.fromEntries([...text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => [m[1], Number(m[2])]));
  return { count: value('count'), sum: value('sum'), buckets };
}

describe('the timing histograms of /metrics', () => {
  afterEach(() => vi.useRealTimers());

  it('a scrape sees every observation made before it', async () => {
    const timings = new Timings();
    const registry = new Registry();
    timings.register(registry);
    expect((await read(registry, 'tessera_store_commit_seconds')).count).toBe(0);
    timings.commit(0.0004);
    timings.commit(0.002);
    timings.receive(0.3);
    const commit = await read(registry, 'tessera_store_commit_seconds');
    expect(commit.count).toBe(2);
    expect(commit.sum).toBeCloseTo(0.0024, 10);
    expect(commit.buckets).toMatchObject({ '0.00025': 0, '0.0005': 1, '0.0015': 1, '0.002': 2, '+Inf': 2 });
    expect((await read(registry, 'tessera_receive_seconds')).buckets).toMatchObject({ '0.25': 0, '0.5': 1 });
    expect((await read(registry, 'tessera_local_write_seconds')).count).toBe(0);
    // Counted once: a second scrape sees the same.
    expect((await read(registry, 'tessera_store_commit_seconds')).count).toBe(2);
  });

  it('every observation is counted, however many wait, whether the timer or a scrape hands them over', async () => {
    vi.useFakeTimers();
    const timings = new Timings();
    const registry = new Registry();
    timings.register(registry);
    for (let i = 0; i < 10_000; i++) timings.write(0.001);
    timings.write(2);
    vi.advanceTimersByTime(1000);
    vi.useRealTimers();
    const write = await read(registry, 'tessera_local_write_seconds');
    expect(write.count).toBe(10_001);
    expect(write.buckets).toMatchObject({ '0.001': 10_000, '1': 10_000, '2.5': 10_001 });
  });
});
