import { describe, expect, it } from 'vitest';

import { MAX_SLICE_ROWS, MAX_SLICES_PER_PASS, MIN_SLICE_ROWS, sliceDue, type VerifyProgress } from '../../src/agent/verify-schedule.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

/** Runs a table every minute for `minutes` and returns the rows verified and the slices. */
function simulate(estimate: number, periodHours: number, minutes: number): { rows: number; slices: number; passes: number } {
  let progress: VerifyProgress = { passStartedAt: null, rowsDone: 0 };
  let rows = 0;
  let slices = 0;
  let passes = 0;
  const t0 = Date.parse('2026-01-01T00:00:00Z');
  for (let m = 0; m < minutes; m++) {
    const now = t0 + m * MINUTE;
    const due = sliceDue(now, progress, estimate, periodHours);
    if (!due) continue;
    const slice = Math.min(due.rows, estimate - progress.rowsDone);
    rows += slice;
    slices++;
    const done = progress.rowsDone + slice >= estimate;
    if (done) passes++;
    progress = done ? { passStartedAt: new Date(now), rowsDone: 0 } : { passStartedAt: due.passStartedAt, rowsDone: progress.rowsDone + due.rows };
  }
  return { rows, slices, passes };
}

describe('rolling verification schedule', () => {
  it('hashes a small table about once a period, not every run', () => {
    // 100 rows, a 24-hour period, three days of one-minute runs: the first pass at once, then one a day.
    const r = simulate(100, 24, 3 * 24 * 60);
    expect(r.passes).toBeGreaterThanOrEqual(3);
    expect(r.passes).toBeLessThanOrEqual(4);
    expect(r.rows).toBeLessThanOrEqual(4 * 100);
  });

  it('spreads a large table over the period in at most MAX_SLICES_PER_PASS slices', () => {
    // 1.44 million rows a day: a slice of 60,000 rows about once an hour; a pass a day.
    const r = simulate(1_440_000, 24, 2 * 24 * 60);
    expect(r.passes).toBe(2);
    expect(r.rows).toBe(2 * 1_440_000);
    expect(r.slices).toBeLessThanOrEqual(2 * MAX_SLICES_PER_PASS);
    // 20,000 rows a day: slices of the minimum, 1,000 rows every 72 minutes: 20 a pass.
    const s = simulate(20_000, 24, 24 * 60);
    expect(s.passes).toBe(1);
    expect(s.slices).toBeGreaterThanOrEqual(19);
    expect(s.slices).toBeLessThanOrEqual(21);
  });

  it('owes a first slice at once, nothing a minute later, and catches up by bounded slices', () => {
    const t = Date.parse('2026-01-01T00:00:00Z');
    const first = sliceDue(t, { passStartedAt: null, rowsDone: 0 }, 20_000, 24);
    expect(first?.rows).toBe(MIN_SLICE_ROWS);
    const passStartedAt = first?.passStartedAt ?? null;
    expect(sliceDue(t + MINUTE, { passStartedAt, rowsDone: MIN_SLICE_ROWS }, 20_000, 24)).toBeNull();
    // An agent down for a week owes the whole table: slices are capped.
    expect(sliceDue(t + 7 * 24 * HOUR, { passStartedAt, rowsDone: MIN_SLICE_ROWS }, 10_000_000, 24)?.rows).toBe(MAX_SLICE_ROWS);
    // A period of 0 turns rolling verification off.
    expect(sliceDue(t, { passStartedAt: null, rowsDone: 0 }, 100, 0)).toBeNull();
  });

  it('ends a pass whose table is larger than estimated', () => {
    const t = Date.parse('2026-01-01T00:00:00Z');
    // The estimate said 5,000 rows and 5,000 are verified, but the pass has not reached the end.
    expect(sliceDue(t + 25 * HOUR, { passStartedAt: new Date(t), rowsDone: 5000 }, 5000, 24)).not.toBeNull();
  });
});
