/**
 * Chooses the size of the next upload batch from the history of the previous ones.
 *
 * A batch is cut at a bytes limit or a rows limit, whichever comes first; both are tuned. The rule:
 *  - aim: observed throughput x target duration, in bytes (EWMA of bytes/second) and in rows (EWMA
 *    of rows/second), so a batch takes about `targetSeconds` whether the cost is per byte (the link)
 *    or per row (the server's indexes), and a switch from wide to narrow rows does not overshoot. A
 *    slower batch moves the estimate more (weight 0.7) than a faster one (0.3), and a batch that took
 *    twice the target or more sets it alone: slow down fast, speed up gradually;
 *  - grow gradually: at most x1.5 per successful batch;
 *  - shrink fast: a failure for size-related reasons (413 too large, timeout, 5xx/429) marks the
 *    failed size as a ceiling and drops to the last good size below it (under a ceiling, the largest
 *    good size since it was set), or to half the failed size when there is none, or when a size
 *    known good failed too (conditions changed). A timeout also caps the throughput estimate at
 *    bytes/timeout, so the next batch fits the target at once;
 *  - near a ceiling, bisect: the next size is halfway between the largest good size and the
 *    ceiling, and holds at the good size once they are within 5% of each other;
 *  - probe: after 8 good batches in a row under a ceiling, one batch tries 1.25 x the ceiling. If it
 *    succeeds, the limit is gone (a server that recovered): the ceiling is forgotten and growth
 *    resumes. If it fails, the ceiling stands and the next probe waits twice as long (up to 64
 *    batches), so a fixed limit costs about one failed request per 64;
 *  - a network error (server unreachable) or rows the server rejects for their content (400) say
 *    nothing about the size: no change. Batches under half of both limits (a table's tail) carry no
 *    information about throughput: no change either;
 *  - stay within [min, max] in rows and bytes;
 *  - start a new run from the last good size: the constructor replays the recorded history (oldest
 *    first) to recover the throughput estimate and the ceiling, then starts at the last successful
 *    full batch's size if the replay ended above it (about to grow or to probe).
 */
/** One upload request as the tuner learns from it (and tidemark.batch_history keeps it). */
export interface BatchRecord {
  rows: number;
  bytes: number;
  durationSeconds: number;
  outcome: 'ok' | 'failed' | 'rejected';
  /** The failure's class (remote.ts ErrorClass), null for a success. */
  errorClass: string | null;
}

export interface TunerLimits {
  /** Duration one upload request should take, in seconds. */
  targetSeconds: number;
  minRows: number;
  maxRows: number;
  minBytes: number;
  maxBytes: number;
  /** Bytes limit of the first batch when there is no history. */
  initialBytes: number;
}

export interface BatchSize {
  /** Cut the batch at this many rows... */
  rows: number;
  /** ...or at this many bytes, whichever comes first (a batch always holds at least one row). */
  bytes: number;
}

/** Largest growth factor per successful batch. */
const GROWTH = 1.5;
/** EWMA weights of a throughput sample below / above the current estimate. */
const RATE_WEIGHT_DOWN = 0.7;
const RATE_WEIGHT_UP = 0.3;
/** A batch this many times the target duration sets the throughput estimate by itself. */
const SLOW_SHARE = 2;
/** Bisection stops when the largest good size is within this share of the ceiling. */
const SETTLED_GAP = 0.05;
/** Good batches in a row under a ceiling before a probe above it; doubles after each failed probe. */
const PROBE_AFTER_MIN = 8;
const PROBE_AFTER_MAX = 64;
/** A probe tries this multiple of the ceiling. */
const PROBE_STEP = 1.25;
/** Batches smaller than this share of both limits (a table's tail) carry little information. */
const FULL_SHARE = 0.5;
/** Error classes that say something about the size of the batch. */
const SIZE_ERRORS: ReadonlySet<string> = new Set(['too_large', 'timeout', 'server_error']);

export class BatchTuner {
  private bytes: number;
  private rows: number;
  private bytesRate: number | null = null;
  private rowsRate: number | null = null;
  /** Smallest size (bytes) that failed for size reasons, until a probe above it succeeds. */
  private ceiling: number | null = null;
  /** The last size (bytes) that succeeded; under a ceiling, the largest since it was set. */
  private floor: number | null = null;
  private streak = 0;
  private probeAfter = PROBE_AFTER_MIN;
  /** The last full batch that succeeded. */
  private lastGood: { rows: number; bytes: number } | null = null;

  constructor(
    private readonly limits: TunerLimits,
    /** Recent batches of this table, newest first (from tidemark.batch_history). */
    history: readonly BatchRecord[] = [],
  ) {
    this.bytes = this.clampBytes(limits.initialBytes);
    this.rows = limits.maxRows;
    // Replay oldest first so the state is what it was at the end of the last run.
    for (const b of [...history].reverse()) {
      if (b.outcome === 'ok') this.success(b.rows, b.bytes, b.durationSeconds);
      else if (b.outcome === 'failed') this.failure(b.rows, b.bytes, b.errorClass ?? 'server_error', b.durationSeconds);
    }
    // A new run starts from the last good size: not from a probe, nor a step of growth not yet tried.
    if (this.lastGood) {
      this.bytes = this.clampBytes(Math.min(this.bytes, this.lastGood.bytes));
      this.rows = this.clampRows(Math.min(this.rows, this.lastGood.rows));
    }
    this.streak = 0;
  }

  private clampBytes(bytes: number): number {
    return Math.round(Math.min(this.limits.maxBytes, Math.max(this.limits.minBytes, bytes)));
  }

  private clampRows(rows: number): number {
    return Math.round(Math.min(this.limits.maxRows, Math.max(this.limits.minRows, rows)));
  }

  /** Limits of the next batch. */
  get size(): BatchSize {
    return { bytes: this.bytes, rows: this.rows };
  }

  /** The size limit learned from failures, if any (bytes). */
  get learnedCeiling(): number | null {
    return this.ceiling;
  }

  /**
   * A batch went through. `cutAt`, the size it was cut at (the uploader's), is where growth starts
   * from when the size has grown since: with several batches in flight, a success must not add a
   * step onto a step an earlier success took from the same size. Without it, the current size.
   */
  success(rows: number, bytes: number, seconds: number, cutAt?: { rows: number; bytes: number }): void {
    const full = bytes >= this.bytes * FULL_SHARE || rows >= this.rows * FULL_SHARE;
    if (!full || rows <= 0) return;
    this.lastGood = { rows, bytes };
    const s = Math.max(seconds, 0.001);
    // A batch that took twice the target measured a slower link well: believe it at once.
    const slow = s >= SLOW_SHARE * this.limits.targetSeconds;
    this.bytesRate = slow ? bytes / s : ewma(this.bytesRate, bytes / s);
    this.rowsRate = slow ? rows / s : ewma(this.rowsRate, rows / s);
    if (this.ceiling !== null && bytes >= this.ceiling) {
      // A batch at or above the ceiling went through: the limit is gone.
      this.ceiling = null;
      this.probeAfter = PROBE_AFTER_MIN;
    }
    this.floor = this.ceiling === null ? bytes : Math.max(this.floor ?? 0, bytes);
    this.streak++;
    const { targetSeconds } = this.limits;
    const from = { bytes: Math.min(this.bytes, cutAt?.bytes ?? this.bytes), rows: Math.min(this.rows, cutAt?.rows ?? this.rows) };
    let nextBytes = Math.min(this.bytesRate * targetSeconds, Math.max(from.bytes, bytes) * GROWTH);
    const nextRows = Math.min(this.rowsRate * targetSeconds, Math.max(from.rows, rows) * GROWTH);
    if (this.ceiling !== null) {
      const good = this.floor ?? bytes;
      if (this.streak >= this.probeAfter) {
        nextBytes = Math.min(nextBytes, this.ceiling * PROBE_STEP);
        this.streak = 0;
      } else if (this.ceiling - good > SETTLED_GAP * this.ceiling) {
        nextBytes = Math.min(nextBytes, (good + this.ceiling) / 2);
      } else {
        nextBytes = Math.min(nextBytes, good);
      }
    }
    this.bytes = this.clampBytes(nextBytes);
    this.rows = this.clampRows(nextRows);
  }

  /**
   * A batch failed. `errorClass` 'too_large', 'timeout' and 'server_error' are about the size; anything
   * else ('rejected' rows, 'network', 'conflict', 'auth', 'client_error') leaves the size alone.
   */
  failure(rows: number, bytes: number, errorClass: string, seconds?: number): void {
    if (!SIZE_ERRORS.has(errorClass)) return;
    this.streak = 0;
    if (this.ceiling !== null && bytes >= this.ceiling) this.probeAfter = Math.min(PROBE_AFTER_MAX, this.probeAfter * 2);
    this.ceiling = Math.min(this.ceiling ?? Number.POSITIVE_INFINITY, bytes);
    if (this.floor !== null && this.floor >= bytes) this.floor = null;
    let nextBytes = this.floor ?? bytes / 2;
    let nextRows = this.rows;
    if (errorClass === 'timeout' && seconds !== undefined && seconds > 0) {
      // The link moved at most this fast: size the next batch for the target at that speed.
      this.bytesRate = Math.min(this.bytesRate ?? Number.POSITIVE_INFINITY, bytes / seconds);
      this.rowsRate = Math.min(this.rowsRate ?? Number.POSITIVE_INFINITY, rows / seconds);
      nextBytes = Math.min(nextBytes, this.bytesRate * this.limits.targetSeconds);
      nextRows = Math.min(nextRows, this.rowsRate * this.limits.targetSeconds);
    }
    this.bytes = this.clampBytes(Math.min(this.bytes, nextBytes));
    this.rows = this.clampRows(nextRows);
  }
}

function ewma(current: number | null, sample: number): number {
  if (current === null) return sample;
  const w = sample < current ? RATE_WEIGHT_DOWN : RATE_WEIGHT_UP;
  return w * sample + (1 - w) * current;
}
