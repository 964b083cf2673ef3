import { randomUUID } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { tickOffsetMs } from '../../src/agent/tick-spread.js';

describe('tick spread', () => {
  it('gives each database a stable offset within the minute, spread evenly over a fleet', () => {
    const id = '6f1c2a52-7d1e-4b8e-9a43-0a7f5c9b1e2d';
    expect(tickOffsetMs(id, '* * * * *', 60)).toBe(tickOffsetMs(id.toUpperCase(), '* * * * *', 60));
    const buckets = new Array<number>(6).fill(0);
    for (let i = 0; i < 6000; i++) {
      const ms = tickOffsetMs(randomUUID(), '* * * * *', 60);
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(54_000);
      buckets[Math.floor(ms / 9000)] = (buckets[Math.floor(ms / 9000)] ?? 0) + 1;
    }
    // Six 9-second buckets of ~1,000 databases each (a uniform spread; a burst would fill one).
    for (const n of buckets) expect(n).toBeGreaterThan(800);
  });

  it('stays within short intervals and leaves schedules with a seconds field alone', () => {
    expect(tickOffsetMs(randomUUID(), '*/5 * * * * *', 5)).toBe(0);
    expect(tickOffsetMs(randomUUID(), '*/2 * * * *', 120)).toBeLessThan(60_000);
    expect(tickOffsetMs(randomUUID(), '* * * * *', 10)).toBeLessThan(9000);
  });
});
