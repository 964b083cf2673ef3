/**
 * The batch tuner against synthetic links: a simulator sends a table through a link model (size ->
 * duration or failure) the way the Uploader does, and the tests assert how fast the tuner converges
 * and how much throughput it keeps compared with the best fixed batch size found by sweeping.
 *
 * Durations carry seeded jitter; the seed is printed, and TIDEMARK_TEST_SEED=<seed> replays a run.
 */
import { describe, expect, it } from 'vitest';
import type { BatchRecord } from '../../src/agent/batch-tuner.js';
import { BatchTuner, type TunerLimits } from '../../src/agent/batch-tuner.js';
import { AGENT_DEFAULTS } from '../../src/shared/config/agent-config.js';
import { seededRandom as random } from '../support/seeded-random.js';

const SEED = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`batch-tuner simulation seed ${SEED} (replay with TIDEMARK_TEST_SEED=${SEED})`);

/** The agent's defaults (target 2 s, 1..200 000 rows, first batch 4 MiB, from 16 KiB), up to 32 MiB. */
const LIMITS: TunerLimits = {
  targetSeconds: AGENT_DEFAULTS.targetBatchSeconds,
  minRows: AGENT_DEFAULTS.minBatchRows,
  maxRows: AGENT_DEFAULTS.maxBatchRows,
  minBytes: AGENT_DEFAULTS.minBatchBytes,
  // Wider than the default (8 MiB), so the links below can ask for batches of 10-20 MB.
  maxBytes: 32 * 1024 * 1024,
  initialBytes: AGENT_DEFAULTS.initialBatchBytes,
};
const TIMEOUT_SECONDS = AGENT_DEFAULTS.batchTimeoutSeconds;
const KB = 1000;
const MB = 1000 * KB;

// --- the simulator -------------------------------------------------------------------------------

type SizeErrorClass = 'too_large' | 'timeout' | 'server_error';

/** What one request costs on a link: its duration, and its error if it failed. */
interface Outcome {
  seconds: number;
  error?: SizeErrorClass;
}

/** A synthetic link: the outcome of sending `rows` rows of `bytes` bytes at simulated time `now` (seconds). */
type Link = (batch: { rows: number; bytes: number }, now: number) => Outcome;

/** Row widths of a table, piecewise constant: `width` bytes from row `from` on (sorted, the first at 0). */
type RowWidths = readonly { from: number; width: number }[];

interface Attempt {
  rows: number;
  bytes: number;
  seconds: number;
  error?: SizeErrorClass;
  /** Simulated time at the end of the request. */
  at: number;
  /** The tuner's limits after this request. */
  limitBytes: number;
  limitRows: number;
}

interface SimResult {
  attempts: Attempt[];
  bytesApplied: number;
  rowsSkipped: number;
  seconds: number;
  /** Bytes applied per second, failed requests and retry pauses included. */
  throughput: number;
}

interface Sizer {
  readonly size: { rows: number; bytes: number };
  success(rows: number, bytes: number, seconds: number): void;
  failure(rows: number, bytes: number, errorClass: string, seconds?: number): void;
}

/**
 * Sends a table of `rows` rows through `link` as the Uploader does: each batch is cut at the tuner's
 * limits (at least one row). A batch that fails goes back to the head of the table and is cut again
 * at the tuner's new limits and at most half its rows (until that many rows are through); a single
 * row that fails is skipped (quarantined). A pause of 0.1 s precedes the re-send of a batch that
 * timed out or met a server error.
 */
function simulate(sizer: Sizer, link: Link, table: { rows: number; width: RowWidths; maxRequests?: number }): SimResult {
  const maxRequests = table.maxRequests ?? 200_000;
  const segs = table.width;
  const attempts: Attempt[] = [];
  let now = 0;
  let bytesApplied = 0;
  let rowsSkipped = 0;
  /** Rows from `from` (at most `available`) that fit `rows` and `bytes`, at least one, and their bytes. */
  const cut = (from: number, available: number, rows: number, bytes: number): { n: number; b: number } => {
    let k = 0;
    while (k + 1 < segs.length && (segs[k + 1]?.from ?? 0) <= from) k++;
    const limit = Math.min(available, rows);
    let n = 0;
    let b = 0;
    while (n < limit) {
      const width = segs[k]?.width ?? 1;
      const end = segs[k + 1]?.from ?? Number.POSITIVE_INFINITY;
      let take = Math.min(end - (from + n), limit - n, Math.floor((bytes - b) / width));
      if (n === 0) take = Math.max(take, 1);
      if (take <= 0) break;
      n += take;
      b += take * width;
      if (from + n < end) break;
      k++;
    }
    return { n, b };
  };
  // Halves of failed batches: until `rows` more rows are through, at most `maxRows` rows a batch.
  let halves: { maxRows: number; rows: number }[] = [];
  for (let next = 0; next < table.rows && attempts.length < maxRequests; ) {
    const size = sizer.size;
    const maxRows = Math.min(size.rows, ...halves.map((h) => h.maxRows));
    const { n: rows, b: bytes } = cut(next, table.rows - next, maxRows, size.bytes);
    const out = link({ rows, bytes }, now);
    now += out.seconds;
    if (out.error) sizer.failure(rows, bytes, out.error, out.seconds);
    else {
      sizer.success(rows, bytes, out.seconds);
      bytesApplied += bytes;
    }
    const after = sizer.size;
    attempts.push({ rows, bytes, seconds: out.seconds, ...(out.error ? { error: out.error } : {}), at: now, limitBytes: after.bytes, limitRows: after.rows });
    if (out.error && rows > 1) {
      if (out.error !== 'too_large') now += 0.1;
      halves.push({ maxRows: Math.ceil(rows / 2), rows });
      continue;
    }
    if (out.error) rowsSkipped++;
    next += rows;
    for (const h of halves) h.rows -= rows;
    halves = halves.filter((h) => h.rows > 0);
  }
  return { attempts, bytesApplied, rowsSkipped, seconds: now, throughput: bytesApplied / now };
}

/** A sizer that never changes: the baseline. */
function fixed(bytes: number): Sizer {
  return { size: { rows: Number.MAX_SAFE_INTEGER, bytes }, success: () => {}, failure: () => {} };
}

/**
 * The best fixed bytes limit for a link: sweeps minBytes..maxBytes in steps of 5%. Sweep a link
 * without jitter: the best of 150 noisy runs would overstate what a fixed size can expect.
 */
function bestFixed(makeLink: () => Link, table: { rows: number; width: RowWidths }): { bytes: number; throughput: number } {
  let best = { bytes: 0, throughput: 0 };
  for (let b = LIMITS.minBytes; b <= LIMITS.maxBytes; b = Math.ceil(b * 1.05)) {
    const r = simulate(fixed(b), makeLink(), table);
    if (r.throughput > best.throughput) best = { bytes: b, throughput: r.throughput };
  }
  return best;
}

// --- link models ---------------------------------------------------------------------------------

interface LinkShape {
  /** Fixed cost of a request, seconds. */
  latencySeconds: number;
  /** Bytes per second of the link, or a link that changes speed at a point in (simulated) time. */
  bytesPerSecond: number | BandwidthStep;
  /** Server cost per row, seconds. */
  secondsPerRow?: number;
  /** Durations vary by up to this share either way (seeded). */
  jitter?: number;
  /** Requests that would take longer fail with a timeout after this many seconds. */
  timeoutSeconds?: number;
  /** Bodies above this many bytes fail (413, or a proxy's 502), after the server read that many bytes. */
  capBytes?: number | ((now: number) => number);
  capError?: 'too_large' | 'server_error';
}

interface BandwidthStep {
  before: number;
  after: number;
  atSeconds: number;
}

/** Seconds to move `bytes` starting at `start`, the link changing speed mid-transfer if it does. */
function transferSeconds(bytes: number, start: number, bw: number | BandwidthStep): number {
  if (typeof bw === 'number') return bytes / bw;
  if (start >= bw.atSeconds) return bytes / bw.after;
  const early = (bw.atSeconds - start) * bw.before;
  return bytes <= early ? bytes / bw.before : bw.atSeconds - start + (bytes - early) / bw.after;
}

function link(shape: LinkShape, seed = SEED): Link {
  const rnd = random(seed);
  const timeout = shape.timeoutSeconds ?? TIMEOUT_SECONDS;
  return (batch, now) => {
    const cap = typeof shape.capBytes === 'function' ? shape.capBytes(now) : shape.capBytes;
    const noise = 1 + (shape.jitter ?? 0) * (2 * rnd() - 1);
    const start = now + shape.latencySeconds;
    if (cap !== undefined && batch.bytes > cap)
      return { seconds: (shape.latencySeconds + transferSeconds(cap, start, shape.bytesPerSecond)) * noise, error: shape.capError ?? 'too_large' };
    const seconds = (shape.latencySeconds + transferSeconds(batch.bytes, start, shape.bytesPerSecond) + batch.rows * (shape.secondsPerRow ?? 0)) * noise;
    return seconds > timeout ? { seconds: timeout, error: 'timeout' } : { seconds };
  };
}

const ROWS_100B: RowWidths = [{ from: 0, width: 100 }];

/**
 * Requests sent before the sizes settled: the first request from which on every request (but the
 * table's last) either succeeded with [lo, hi] bytes or failed with (hi, 1.5 hi] bytes (a probe).
 */
function convergedAt(attempts: readonly Attempt[], lo: number, hi: number): number {
  let k = attempts.length;
  for (let i = attempts.length - 2; i >= 0; i--) {
    const a = attempts[i] as Attempt;
    const fine = a.error ? a.bytes > hi && a.bytes <= 1.5 * hi : a.bytes >= lo && a.bytes <= hi;
    if (!fine) break;
    k = i;
  }
  return k;
}

function toHistory(attempts: readonly Attempt[]): BatchRecord[] {
  return attempts
    .map((a): BatchRecord => ({ rows: a.rows, bytes: a.bytes, durationSeconds: a.seconds, outcome: a.error ? 'failed' : 'ok', errorClass: a.error ?? null }))
    .reverse();
}

// --- tests ---------------------------------------------------------------------------------------

/**
 * The largest simulations replay millions of rows: pure CPU, deterministic, but some 20 s on an idle
 * machine and several times that on a busy one. Their outcome never depends on the time they take.
 */
const SIMULATION_TIMEOUT_MS = 300_000;

describe('BatchTuner on a link that fails above a body size', () => {
  it.each([
    { capBytes: 64 * KB, bytesPerSecond: 5 * MB, latencySeconds: 0.05 },
    { capBytes: 1 * MB, bytesPerSecond: 20 * MB, latencySeconds: 0.05 },
    { capBytes: 10 * MB, bytesPerSecond: 50 * MB, latencySeconds: 0.05 },
  ])(
    'settles within [50%, 100%] of a $capBytes-byte limit within 15 batches, then fails only to probe (at most once per 32 batches)',
    (shape) => {
      const cap = shape.capBytes;
      const r = simulate(new BatchTuner(LIMITS), link({ ...shape, jitter: 0.2 }), { rows: (600 * cap) / 100, width: ROWS_100B });
      const k = convergedAt(r.attempts, cap / 2, cap);
      const after = r.attempts.slice(k, -1);
      const failures = after.filter((a) => a.error).length;
      const batches = after.filter((a) => !a.error);
      const nearCap = batches.filter((a) => a.bytes >= 0.9 * cap).length / batches.length;
      console.log(
        `cap ${cap} B: converged after ${k} batches; then ${after.length} batches, ${failures} failed probes, ${(nearCap * 100).toFixed(1)}% of good batches within 90% of the cap`,
      );
      expect(k).toBeLessThanOrEqual(15);
      expect(failures).toBeLessThanOrEqual(Math.ceil(after.length / 32));
      expect(nearCap).toBeGreaterThanOrEqual(0.85);
      expect(r.rowsSkipped).toBe(0);
    },
    SIMULATION_TIMEOUT_MS,
  );

  it.each([
    { name: '413 above 64 kB, 5 MB/s', capBytes: 64 * KB, bytesPerSecond: 5 * MB, capError: 'too_large' as const },
    { name: '413 above 1 MB, 20 MB/s', capBytes: 1 * MB, bytesPerSecond: 20 * MB, capError: 'too_large' as const },
    { name: '413 above 10 MB, 50 MB/s', capBytes: 10 * MB, bytesPerSecond: 50 * MB, capError: 'too_large' as const },
    { name: 'proxy 502 above 1 MB, 20 MB/s', capBytes: 1 * MB, bytesPerSecond: 20 * MB, capError: 'server_error' as const },
  ])(
    'keeps at least 80% of the best fixed size throughput: $name',
    ({ name, ...shape }) => {
      const table = { rows: (300 * shape.capBytes) / 100, width: ROWS_100B };
      const best = bestFixed(() => link({ ...shape, latencySeconds: 0.05 }), table);
      const tuned = simulate(new BatchTuner(LIMITS), link({ ...shape, latencySeconds: 0.05, jitter: 0.2 }), table);
      const ratio = tuned.throughput / best.throughput;
      console.log(
        `${name}: tuned ${(tuned.throughput / MB).toFixed(2)} MB/s, best fixed ${best.bytes} B ${(best.throughput / MB).toFixed(2)} MB/s, ratio ${ratio.toFixed(3)}`,
      );
      expect(ratio).toBeGreaterThanOrEqual(0.8);
    },
    SIMULATION_TIMEOUT_MS,
  );
});

describe('BatchTuner on a throttled link', () => {
  it.each([
    {
      name: '8 MB/s throttled to 0.5 MB/s after 20 s',
      shape: { latencySeconds: 0.1, bytesPerSecond: { before: 8 * MB, after: 0.5 * MB, atSeconds: 20 } },
      tableBytes: 300 * MB,
    },
    {
      name: '200 kB/s with a 10 s timeout (the first 4 MiB batch times out)',
      shape: { latencySeconds: 0.1, bytesPerSecond: 200 * KB, timeoutSeconds: 10 },
      tableBytes: 60 * MB,
    },
  ])('keeps at least 80% of the best fixed size throughput: $name', ({ name, shape, tableBytes }) => {
    const table = { rows: tableBytes / 100, width: ROWS_100B };
    const best = bestFixed(() => link(shape), table);
    const tuned = simulate(new BatchTuner(LIMITS), link({ ...shape, jitter: 0.2 }), table);
    const ratio = tuned.throughput / best.throughput;
    console.log(
      `${name}: tuned ${(tuned.throughput / KB).toFixed(0)} kB/s, best fixed ${best.bytes} B ${(best.throughput / KB).toFixed(0)} kB/s, ratio ${ratio.toFixed(3)}`,
    );
    expect(ratio).toBeGreaterThanOrEqual(0.8);
  });

  it('returns to the target duration within 3 batches when the link slows down tenfold, without a timeout', () => {
    const slowAt = 60;
    const r = simulate(
      new BatchTuner(LIMITS),
      link({ latencySeconds: 0.05, bytesPerSecond: { before: 10 * MB, after: 1 * MB, atSeconds: slowAt }, jitter: 0.1 }),
      { rows: 7_000_000, width: ROWS_100B },
    );
    const target = LIMITS.targetSeconds;
    const onTarget = (a: Attempt) => a.seconds >= 0.5 * target && a.seconds <= 1.5 * target;
    const body = r.attempts.slice(0, -1);
    const before = body.filter((a) => a.at <= slowAt);
    const after = body.filter((a) => a.at > slowAt);
    const firstOnTarget = before.findIndex((_a, i) => before.slice(i).every(onTarget));
    const offTargetAfter = after.findIndex((_a, i) => after.slice(i).every(onTarget));
    console.log(
      `slowing link: on target after ${firstOnTarget} batches at 10 MB/s; after the drop to 1 MB/s, ${offTargetAfter} batches off target (longest ${Math.max(...after.map((a) => a.seconds)).toFixed(1)} s)`,
    );
    expect(r.attempts.some((a) => a.error)).toBe(false);
    expect(firstOnTarget).toBeGreaterThanOrEqual(0);
    expect(firstOnTarget).toBeLessThanOrEqual(6);
    expect(offTargetAfter).toBeGreaterThanOrEqual(0);
    expect(offTargetAfter).toBeLessThanOrEqual(3);
    expect(after.length).toBeGreaterThan(20);
  });

  it('shrinks to the target at once after a timeout', () => {
    const t = new BatchTuner({ ...LIMITS, initialBytes: 20 * MB });
    t.failure(200_000, 20 * MB, 'timeout', TIMEOUT_SECONDS);
    // At most 20 MB / 60 s moved: 2 s of that is 0.67 MB.
    expect(t.size.bytes).toBeLessThanOrEqual(Math.ceil((20 * MB * LIMITS.targetSeconds) / TIMEOUT_SECONDS));
    expect(t.size.rows).toBeLessThanOrEqual(Math.ceil((200_000 * LIMITS.targetSeconds) / TIMEOUT_SECONDS));
  });
});

describe('BatchTuner with a server that recovers', () => {
  it('grows back to the largest size within 64 + 15 batches after a server that failed above 256 kB recovers', () => {
    const recoverAt = 120;
    const r = simulate(
      new BatchTuner(LIMITS),
      link({
        latencySeconds: 0.05,
        bytesPerSecond: 20 * MB,
        jitter: 0.2,
        capBytes: (now) => (now < recoverAt ? 256 * KB : Number.POSITIVE_INFINITY),
        capError: 'server_error',
      }),
      { rows: 20_000_000, width: ROWS_100B },
    );
    const before = r.attempts.filter((a) => a.at < recoverAt);
    const after = r.attempts.filter((a) => a.at >= recoverAt);
    const k = convergedAt(before, 128 * KB, 256 * KB);
    const grown = after.findIndex((a) => a.limitBytes >= 0.9 * LIMITS.maxBytes);
    console.log(`recovering server: ${k} batches to settle under its 256 kB limit; ${grown} batches after recovery to reach 90% of maxBytes`);
    expect(k).toBeLessThanOrEqual(15);
    expect(grown).toBeGreaterThanOrEqual(0);
    expect(grown).toBeLessThanOrEqual(64 + 15);
    expect(r.rowsSkipped).toBe(0);
  });

  it('lifts a learned ceiling as soon as a batch above it succeeds', () => {
    const t = new BatchTuner({ ...LIMITS, initialBytes: 1 * MB });
    t.failure(10_000, 1 * MB, 'too_large');
    expect(t.learnedCeiling).toBe(1 * MB);
    t.success(12_000, 1.2 * MB, 0.1);
    expect(t.learnedCeiling).toBeNull();
    expect(t.size.bytes).toBe(1.2 * MB * 1.5); // free to grow again
    t.success(18_000, 1.8 * MB, 0.15);
    expect(t.size.bytes).toBe(1.8 * MB * 1.5);
  });
});

describe('BatchTuner tunes rows as well as bytes', () => {
  it('keeps batches near the target when rows turn 25 times narrower and the server pays per row', () => {
    const switchAt = 200_000;
    const width: RowWidths = [
      { from: 0, width: 1000 },
      { from: switchAt, width: 40 },
    ];
    const r = simulate(new BatchTuner(LIMITS), link({ latencySeconds: 0.05, bytesPerSecond: 100 * MB, secondsPerRow: 100e-6, jitter: 0.1 }), {
      rows: 1_000_000,
      width,
    });
    // A bytes-only limit would keep ~20 MB batches: 500 000 narrow rows, 50 s each.
    let row = 0;
    const narrow = r.attempts.filter((a) => {
      const first = row;
      row += a.error ? 0 : a.rows;
      return first >= switchAt;
    });
    const longest = Math.max(...narrow.map((a) => a.seconds));
    console.log(`per-row cost: longest batch after the switch to narrow rows ${longest.toFixed(2)} s (target ${LIMITS.targetSeconds} s)`);
    expect(narrow.length).toBeGreaterThan(10);
    expect(longest).toBeLessThanOrEqual(1.5 * LIMITS.targetSeconds);
    expect(r.attempts.some((a) => a.error)).toBe(false);
  });

  it('never cuts more than maxRows rows, however narrow and fast', () => {
    const t = new BatchTuner(LIMITS);
    for (let i = 0; i < 30; i++) t.success(t.size.rows, Math.min(t.size.bytes, t.size.rows * 10), 0.01);
    expect(t.size.rows).toBe(LIMITS.maxRows);
    expect(t.size.bytes).toBe(LIMITS.maxBytes);
  });
});

describe('BatchTuner limits and signals', () => {
  it('stays within [min, max] in rows and bytes whatever happens (random outcomes)', () => {
    const rnd = random(SEED ^ 0x5eed);
    const limits: TunerLimits = { targetSeconds: 2, minRows: 10, maxRows: 5000, minBytes: 4096, maxBytes: 1 << 20, initialBytes: 1 << 18 };
    const t = new BatchTuner(limits);
    const classes = ['too_large', 'timeout', 'server_error', 'rejected', 'network', 'conflict'];
    for (let i = 0; i < 5000; i++) {
      const rows = 1 + Math.floor(rnd() * 2 * t.size.rows);
      const bytes = 1 + Math.floor(rnd() * 2 * t.size.bytes);
      if (rnd() < 0.7) t.success(rows, bytes, 10 ** (rnd() * 6 - 3));
      else t.failure(rows, bytes, classes[Math.floor(rnd() * classes.length)] as string, rnd() * 100);
      expect(t.size.bytes).toBeGreaterThanOrEqual(limits.minBytes);
      expect(t.size.bytes).toBeLessThanOrEqual(limits.maxBytes);
      expect(t.size.rows).toBeGreaterThanOrEqual(limits.minRows);
      expect(t.size.rows).toBeLessThanOrEqual(limits.maxRows);
      expect(Number.isInteger(t.size.bytes) && Number.isInteger(t.size.rows)).toBe(true);
    }
  });

  it('goes down to the minimum on a very slow link and up to the maximum on a very fast one', () => {
    const slow = simulate(new BatchTuner(LIMITS), link({ latencySeconds: 0.05, bytesPerSecond: 1 * KB }), { rows: 5000, width: ROWS_100B });
    expect(slow.attempts.at(-2)?.limitBytes).toBe(LIMITS.minBytes);
    const fast = simulate(new BatchTuner(LIMITS), link({ latencySeconds: 0.001, bytesPerSecond: 1000 * MB }), { rows: 10_000_000, width: ROWS_100B });
    expect(fast.attempts.at(-2)?.limitBytes).toBe(LIMITS.maxBytes);
  });

  it.each(['rejected', 'network', 'conflict', 'auth', 'client_error'])('leaves the size alone on a %s error', (errorClass) => {
    const t = new BatchTuner(LIMITS);
    t.success(10_000, 1 * MB, 1);
    t.failure(20_000, 2 * MB, 'too_large');
    const size = t.size;
    t.failure(size.rows, size.bytes, errorClass, 0.5);
    expect(t.size).toEqual(size);
    expect(t.learnedCeiling).toBe(2 * MB);
  });

  it('learns nothing about throughput from a table tail', () => {
    const t = new BatchTuner(LIMITS);
    const size = t.size;
    t.success(3, 300, 5);
    expect(t.size).toEqual(size);
  });

  it('halves on a failure with nothing good below it, and returns to the largest good size otherwise', () => {
    const t = new BatchTuner({ ...LIMITS, initialBytes: 8 * MB });
    t.failure(80_000, 8 * MB, 'server_error');
    expect(t.size.bytes).toBe(4 * MB);
    t.success(40_000, 4 * MB, 0.2);
    expect(t.size.bytes).toBe(6 * MB); // halfway to the ceiling
    t.failure(60_000, 6 * MB, 'too_large');
    expect(t.size.bytes).toBe(4 * MB); // the largest good size
    t.failure(40_000, 4 * MB, 'server_error');
    expect(t.size.bytes).toBe(2 * MB); // the good size failed too: conditions changed, halve
  });
});

describe('BatchTuner starts from history', () => {
  const capped = () => link({ latencySeconds: 0.05, bytesPerSecond: 20 * MB, capBytes: 1 * MB, jitter: 0.2 });

  it('replaying the recorded history gives what the live tuner learned, at its last good size', () => {
    const live = new BatchTuner(LIMITS);
    const r = simulate(live, capped(), { rows: 1_000_000, width: ROWS_100B });
    const replayed = new BatchTuner(LIMITS, toHistory(r.attempts));
    expect(replayed.learnedCeiling).toEqual(live.learnedCeiling);
    const lastGood = r.attempts.slice(0, -1).findLast((a) => !a.error) as Attempt; // the table's tail aside
    expect(replayed.size.bytes).toBe(Math.min(live.size.bytes, lastGood.bytes));
  });

  it('starts a new run from the last good size (the last 50 batches), not from initialBytes', () => {
    const r = simulate(new BatchTuner(LIMITS), capped(), { rows: 1_000_000, width: ROWS_100B });
    const resumed = new BatchTuner(LIMITS, toHistory(r.attempts).slice(0, 50));
    expect(resumed.size.bytes).toBeGreaterThanOrEqual(0.5 * MB);
    expect(resumed.size.bytes).toBeLessThanOrEqual(1 * MB);
    const next = simulate(resumed, capped(), { rows: 200_000, width: ROWS_100B });
    const fresh = simulate(new BatchTuner(LIMITS), capped(), { rows: 200_000, width: ROWS_100B });
    const failed = (x: SimResult) => x.attempts.filter((a) => a.error).length;
    console.log(
      `resumed run: first batch ${next.attempts[0]?.bytes} B under a 1 MB limit, ${failed(next)} of ${next.attempts.length} requests failed (re-learning the limit by bisection); a fresh tuner: ${failed(fresh)} of ${fresh.attempts.length}`,
    );
    expect(next.attempts[0]?.error).toBeUndefined();
    expect(failed(next)).toBeLessThanOrEqual(4);
    expect(next.throughput).toBeGreaterThan(fresh.throughput);
  });

  it('ignores rejected batches and starts from initialBytes without history', () => {
    expect(new BatchTuner(LIMITS).size.bytes).toBe(LIMITS.initialBytes);
    const rejected: BatchRecord[] = Array.from({ length: 10 }, () => ({
      rows: 1,
      bytes: 100,
      durationSeconds: 0.01,
      outcome: 'rejected',
      errorClass: 'rejected',
    }));
    expect(new BatchTuner(LIMITS, rejected).size).toEqual(new BatchTuner(LIMITS).size);
  });
});

describe('batch tuner and load shedding', () => {
  it('does not read an overloaded answer (503 TM_SERVER_OVERLOADED) as a size failure', () => {
    const tuner = new BatchTuner(LIMITS, []);
    const before = tuner.size;
    for (let i = 0; i < 5; i++) tuner.failure(before.rows, before.bytes, 'overloaded', 1);
    expect(tuner.size).toEqual(before);
  });
});

describe('batches in flight together', () => {
  it('grow the size one step from the size they were cut at, not a step per success', () => {
    const tuner = new BatchTuner(LIMITS);
    const cut = tuner.size;
    // Two batches cut at the same size, both fast: the first success takes one growth step...
    tuner.success(1000, cut.bytes, 0.1, cut);
    const grown = tuner.size;
    expect(grown.bytes).toBeGreaterThan(cut.bytes);
    // ...and the second, cut before that step, proves the same size: no second step on top.
    tuner.success(1000, cut.bytes, 0.1, cut);
    expect(tuner.size).toEqual(grown);
  });
});
