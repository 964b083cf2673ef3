/** The uploader's inputs, options, results and per-upload state (uploader.ts). */
import type { Logger } from '../shared/logger.js';
import type { TableSummary } from '../shared/protocol.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { BatchTuner } from './batch-tuner.js';
import type { BatchHistory } from './local/batch-history.js';
import type { LocalTable } from './local/local-catalog.js';
import type { QuarantineRetry, QuarantineStore } from './local/quarantine-store.js';
import type { Remote, RemoteError, UploadOptions as RemoteUploadOptions } from './remote.js';
import type { RunBudget } from './run-budget.js';

export interface UploaderDeps {
  table: LocalTable;
  remote: Remote;
  history: BatchHistory;
  quarantine: QuarantineStore;
  quarantineRetry: QuarantineRetry;
  /** The agent's clock (epoch ms): quarantine backoffs run on it. */
  now: () => number;
  /**
   * Keys (JSON of the key texts) quarantined when the run began: one that reaches the server in any
   * batch leaves quarantine at once. Shared by the run's uploads.
   */
  quarantinedKeys: Set<string>;
  tuner: BatchTuner;
  metrics: AgentMetrics;
  log: Logger;
  timeoutMs: number;
  /** Once exhausted, no new batch starts (each request spends from it). */
  budget: RunBudget;
  /** Called after each batch the server applied (progress display). */
  onBatch?: (rows: number, bytes: number) => void;
}

export interface UploadStats {
  rows: number;
  bytes: number;
  batches: number;
  quarantined: number;
  /** False when the deadline stopped the stream early. */
  complete: boolean;
  /** Keys of the rows the server applied (only when asked for). */
  appliedKeys?: string[][];
  /**
   * Single rows that met a timeout or server error and could not be confirmed (the server never
   * answered a later request): neither applied nor quarantined. The upload is then incomplete, and
   * the next run sends them again.
   */
  unconfirmed: number;
  /**
   * The last row (in stream order) that was applied or quarantined: every row before it in the
   * stream is through (unconfirmed rows hold it back). Where an interrupted upload resumes.
   */
  lastRow?: { key: string[]; version: string };
  /** The server's summary when `finalSettle` went with the last batch and was applied with it. */
  settled?: TableSummary;
}

export interface UploadCallOptions {
  /** Collect the keys of the applied rows in the stats. */
  collectKeys?: boolean;
  /** Send batches as plain inserts (the remote holds none of the table's rows). */
  insertOnly?: boolean;
  /**
   * Called after each batch is through (applied or quarantined) with the stream's last row so far,
   * before the next batch is sent: the caller persists its resume point there.
   */
  onProgress?: (lastRow: { key: string[]; version: string }) => Promise<void>;
  /**
   * A settle to send with the stream's last batch when that batch is sent alone, after every other
   * row of the stream is through and none waits to be confirmed (one request less for a run whose
   * changes fit in a batch). Sent once: a batch that fails goes on without it, and `settled` then
   * stays unset (the caller settles by itself).
   */
  finalSettle?: Pick<RemoteUploadOptions, 'settle' | 'maxModified'>;
  /**
   * Requests in flight at once (default 1). Above 1, a batch is sent while earlier ones are still
   * in flight (the server loads them in parallel); a failure brings it back to one until the failed
   * rows are through. After a crash, up to this many batches are sent again.
   */
  maxInFlight?: number;
  /** Cut no batch above this many bytes, whatever the tuner allows (a first sync's share of batch.maxBytes). */
  maxBatchBytes?: number;
}

/** State of one upload() call. */
export interface UploadContext {
  stats: UploadStats;
  /** Single rows that failed for a transient reason, waiting for a success to prove the server is up. */
  suspects: { buf: Buffer; error: RemoteError }[];
  /** Requests recorded in the batch history. */
  recorded: number;
  /** Send batches as plain inserts (the remote held none of the table's rows); off after a conflict. */
  insertOnly: boolean;
  /** The settle the next request carries (UploadCallOptions.finalSettle), taken by that request whatever its outcome. */
  settleWith?: Pick<RemoteUploadOptions, 'settle' | 'maxModified'> | undefined;
  /** Set while one request resends the suspects (resolveSuspects); others wait for it. */
  resolving: Promise<void> | null;
}
