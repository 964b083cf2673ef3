import { describe, expect, it } from 'vitest';

import { batchReporter, type TableProgress } from '../../src/agent/run-progress.js';
import { formatProgress, ProgressDisplay } from '../../src/cli/progress-display.js';

const base: TableProgress = { table: 'public.items', rowsSent: 0, bytesSent: 0, batches: 0, rowsExpected: 2_000_000, elapsedSeconds: 0, done: false };

describe('progress lines', () => {
  it('show rows, percent, rows/s, MB/s and an ETA from the estimate', () => {
    expect(formatProgress(base)).toBe('public.items  0 / ~2,000,000 rows  0%  0 rows/s  0.0 MB/s');
    expect(formatProgress({ ...base, rowsSent: 500_000, bytesSent: 50_000_000, elapsedSeconds: 10 })).toBe(
      'public.items  500,000 / ~2,000,000 rows  25%  50,000 rows/s  5.0 MB/s  ETA 0:30',
    );
    expect(formatProgress({ ...base, rowsSent: 2_100_000, bytesSent: 10_000_000, elapsedSeconds: 4, done: true })).toBe(
      'public.items  2,100,000 rows  done  525,000 rows/s  2.5 MB/s  4.0 s',
    );
    expect(formatProgress({ ...base, rowsExpected: null, rowsSent: 10, elapsedSeconds: 1 })).toBe('public.items  10 rows  10 rows/s  0.0 MB/s');
  });

  it('redraw in place at most every interval, always when a table starts or ends, and clear at the end', () => {
    let t = 0;
    let out = '';
    const display = new ProgressDisplay({ write: (s: string) => (out += s) }, 100, () => t);
    const report = batchReporter(display.update, 'public.items', 1000, 0, 0, () => t);
    expect(out).toBe('\x1b[2Kpublic.items  0 / ~1,000 rows  0%  0 rows/s  0.0 MB/s\n');
    t = 50;
    report(100, 1000);
    expect(out.split('\n')).toHaveLength(2); // not yet due
    t = 150;
    report(100, 1000);
    expect(out).toContain('\x1b[1F\x1b[2Kpublic.items  200 / ~1,000 rows  20%');
    display.update({ ...base, rowsSent: 200, rowsExpected: null, elapsedSeconds: 0.2, done: true, table: 'public.items' });
    expect(out).toMatch(/public\.items {2}200 \/ ~1,000 rows {2}done/);
    display.finish();
    expect(out.endsWith('\x1b[1F\x1b[0J')).toBe(true);
  });
});
