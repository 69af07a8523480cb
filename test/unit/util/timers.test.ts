import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const DIST_TIMERS = join(import.meta.dirname, '../../../dist/util/timers.js');

describe('longTimeout', () => {
  it('a cancelled timer leaves nothing behind (one per connection, each with its own delay)', async () => {
    // In a child with --expose-gc: 50,000 timers with distinct delays (as tokens' remaining lifetimes are), all cancelled.
    const script = `
      const { longTimeout } = await import(${JSON.stringify(DIST_TIMERS)});
      const used = () => { gc(); gc(); return process.memoryUsage().heapUsed; };
      const before = used();
      for (let i = 0; i < 50000; i++) longTimeout(() => {}, 3_600_000 + i).cancel();
      console.log(used() - before);`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--input-type=module', '-e', script]);
    expect(Number(stdout.trim())).toBeLessThan(1024 * 1024);
  });
});
