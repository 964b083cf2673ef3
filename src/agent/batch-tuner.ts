/**
 * Chooses the size of the next upload batch from the history of the previous ones.
 *
 * The rule, in bytes (a row count follows from the observed row width, so wide and narrow rows are
 * treated alike):
 *  - aim: observed throughput (EWMA of bytes/second) x target duration;
 *  - grow slowly: at most x1.5 per successful batch, and never past halfway to the smallest size
 *    that failed recently (a binary search towards a size limit instead of bouncing off it);
 *  - shrink fast: a failure for size-related reasons (timeout, 413, 5xx, network) halves the size
 *    and remembers it as a ceiling; the ceiling is relaxed by 25% after 20 good batches in a row,
 *    so a server that recovers gets bigger batches again;
 *  - rows the server rejects for their content (400) say nothing about the size: no change;
 *  - stay within [min, max]; start each run where the history left off.
 */
import type { BatchRecord } from './local-database.js';

export interface TunerLimits {
  targetSeconds: number;
  minRows: number;
  maxRows: number;
  minBytes: number;
  maxBytes: number;
  initialBytes: number;
}

export interface BatchSize {
  /** Cut the batch at this many rows... */
  rows: number;
  /** ...or at this many bytes, whichever comes first (a batch always holds minRows rows). */
  bytes: number;
}

const GROWTH = 1.5;
const EWMA_WEIGHT = 0.3;
const CEILING_RELAX_AFTER = 20;
const CEILING_RELAX = 1.25;
/** Batches smaller than this share of the target (a table's tail) carry little information. */
const FULL_SHARE = 0.5;

export class BatchTuner {
  private bytes: number;
  private rate: number | null = null;
  private ceiling: number | null = null;
  private goodSinceFailure = 0;
  private rowWidth: number | null = null;

  constructor(
    private readonly limits: TunerLimits,
    /** Recent batches of this table, newest first (from tidemark.batch_history). */
    history: readonly BatchRecord[] = [],
  ) {
    this.bytes = this.clamp(limits.initialBytes);
    // Replay oldest first so the state is what it was at the end of the last run.
    for (const b of [...history].reverse()) {
      if (b.outcome === 'ok') this.success(b.rows, b.bytes, b.durationSeconds);
      else if (b.outcome === 'failed') this.failure(b.rows, b.bytes, b.errorClass ?? 'server_error');
    }
  }

  private clamp(bytes: number): number {
    return Math.round(Math.min(this.limits.maxBytes, Math.max(this.limits.minBytes, bytes)));
  }

  get size(): BatchSize {
    const widthRows = this.rowWidth ? Math.floor(this.bytes / this.rowWidth) : this.limits.maxRows;
    return { bytes: this.bytes, rows: Math.max(this.limits.minRows, Math.min(this.limits.maxRows, widthRows * 2)) };
  }

  /** The ceiling learned from failures, if any (bytes). */
  get learnedCeiling(): number | null {
    return this.ceiling;
  }

  success(rows: number, bytes: number, seconds: number): void {
    if (rows > 0) this.rowWidth = this.rowWidth === null ? bytes / rows : 0.8 * this.rowWidth + 0.2 * (bytes / rows);
    const full = bytes >= this.bytes * FULL_SHARE || rows >= this.size.rows * FULL_SHARE;
    if (!full) return;
    const rate = bytes / Math.max(seconds, 0.001);
    this.rate = this.rate === null ? rate : EWMA_WEIGHT * rate + (1 - EWMA_WEIGHT) * this.rate;
    this.goodSinceFailure++;
    if (this.ceiling !== null && this.goodSinceFailure >= CEILING_RELAX_AFTER) {
      this.ceiling *= CEILING_RELAX;
      this.goodSinceFailure = 0;
    }
    let next = Math.min(this.rate * this.limits.targetSeconds, Math.max(this.bytes, bytes) * GROWTH);
    if (this.ceiling !== null && next >= this.ceiling) next = Math.max(bytes, (bytes + this.ceiling) / 2);
    this.bytes = this.clamp(next);
  }

  /** `errorClass` 'rejected' (bad rows) leaves the size alone; anything else is about the size. */
  failure(_rows: number, bytes: number, errorClass: string): void {
    if (errorClass === 'rejected' || errorClass === 'conflict' || errorClass === 'auth' || errorClass === 'client_error') return;
    this.goodSinceFailure = 0;
    this.ceiling = this.ceiling === null ? bytes : Math.min(this.ceiling, bytes);
    this.bytes = this.clamp(Math.min(this.bytes, bytes) / 2);
  }

  /** True when a batch of this size cannot shrink further. */
  atMinimum(rows: number, bytes: number): boolean {
    return rows <= this.limits.minRows || bytes <= this.limits.minBytes;
  }
}
