/**
 * Progress of a table's upload while a run is under way, for a live display (`sync --once` on a
 * terminal). Reported after every batch the server applied; `done` once the table's run ended.
 */
export interface TableProgress {
  table: string;
  rowsSent: number;
  bytesSent: number;
  batches: number;
  /**
   * Rows this run is expected to send, from the planner's estimate of the local table minus the
   * rows the server holds (null when that says nothing, e.g. an incremental run).
   */
  rowsExpected: number | null;
  /** Seconds since the table's run began (agent's monotonic clock). */
  elapsedSeconds: number;
  done: boolean;
}

export type ProgressListener = (progress: TableProgress) => void;

/**
 * The per-batch callback of one table's run: sums what was sent and reports it. `estimatedRows`
 * (the planner's figure for the local table) less the server's rows is what the run should send.
 */
export function batchReporter(
  listener: ProgressListener,
  table: string,
  estimatedRows: number,
  remoteRows: number,
  startedMs: number,
  now: () => number = () => performance.now(),
): (rows: number, bytes: number) => void {
  const expected = Math.round(estimatedRows - remoteRows);
  const p: TableProgress = { table, rowsSent: 0, bytesSent: 0, batches: 0, rowsExpected: expected > 0 ? expected : null, elapsedSeconds: 0, done: false };
  listener({ ...p });
  return (rows, bytes) => {
    p.rowsSent += rows;
    p.bytesSent += bytes;
    p.batches++;
    p.elapsedSeconds = (now() - startedMs) / 1000;
    listener({ ...p });
  };
}
