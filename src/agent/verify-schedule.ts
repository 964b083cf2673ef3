/**
 * When the rolling verification verifies, and how much (docs/scaling.md, Rolling verification):
 * a whole pass of a table per `periodHours`, at an even pace, in slices of at least MIN_SLICE_ROWS
 * and at most MAX_SLICES_PER_PASS slices a pass.
 * A run verifies only when the pace owes a slice, so a small table is hashed about once a period
 * (its only slice is owed at the end of the period), a large one a slice every few runs, and an idle
 * run in between hashes nothing. Pure: the run passes its clock.
 */

/** Rows a slice covers at least (fewer only when fewer are left): per-request overhead stays small. */
export const MIN_SLICE_ROWS = 1000;
/** Rows a slice covers at most, however late the pass is (an agent that was down catches up over runs). */
export const MAX_SLICE_ROWS = 200_000;
/**
 * Slices a pass takes at most (a large table's slices grow instead): a slice costs a few requests
 * and statements whatever its size, so a large table is verified about once an hour with a 24-hour
 * period, not every run.
 */
export const MAX_SLICES_PER_PASS = 24;

export interface VerifyProgress {
  /** When the current pass started (null: none yet). */
  passStartedAt: Date | null;
  /** Rows verified in the current pass. */
  rowsDone: number;
}

/** The verification owed now: the slice's rows, and the pass's start to record (a first pass starts now). */
export interface SliceDue {
  rows: number;
  passStartedAt: Date;
}

/**
 * The slice owed at `now` (ms), or null. `estimate`: the table's rows (the planner's estimate).
 * A table's first pass starts as if one slice were already owed, so a new agent verifies a first
 * slice at once and then keeps the pace.
 */
export function sliceDue(now: number, progress: VerifyProgress, estimate: number, periodHours: number): SliceDue | null {
  if (periodHours <= 0) return null;
  const rows = Math.max(estimate, 1);
  const periodMs = periodHours * 3600 * 1000;
  const perMs = rows / periodMs;
  const minSlice = Math.min(MAX_SLICE_ROWS, Math.max(MIN_SLICE_ROWS, Math.ceil(rows / MAX_SLICES_PER_PASS)));
  const firstSlice = Math.min(minSlice, rows);
  const started = progress.passStartedAt?.getTime() ?? now - firstSlice / perMs;
  const left = Math.max(rows - progress.rowsDone, 1);
  // Not capped at the table: a pass that runs late (a table larger than estimated, an agent that
  // was down) keeps owing until it ends.
  const owed = (now - started) * perMs - progress.rowsDone;
  // Owed: a whole slice, or all that is left of the pass (the end of a small table's period).
  if (owed < Math.min(minSlice, left) - 1e-6) return null;
  return { rows: Math.min(MAX_SLICE_ROWS, Math.max(minSlice, Math.ceil(owed))), passStartedAt: new Date(started) };
}
