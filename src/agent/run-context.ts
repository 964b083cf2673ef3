/**
 * What one table run carries through its phases (table-run.ts, table-repair.ts): its dependencies,
 * the table and its snapshot, the uploader, the table state read once at the start, and the result
 * it fills in.
 */
import { ErrorCode, TidemarkError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { classifyPgError } from '../shared/pg.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { TunerLimits } from './batch-tuner.js';
import type { LocalTable } from './local/local-catalog.js';
import type { LocalSnapshot } from './local/local-snapshot.js';
import type { LocalStores } from './local/local-stores.js';
import type { QuarantineRetry } from './local/quarantine-store.js';
import type { TableStateRow } from './local/table-state-store.js';
import type { DiffReport } from './manifest-diff.js';
import type { Remote } from './remote.js';
import type { RunBudgetFactory } from './run-budget.js';
import type { ProgressListener } from './run-progress.js';
import type { Uploader, UploadStats } from './uploader.js';

export interface TableSyncSettings {
  tuner: TunerLimits;
  batchTimeoutSeconds: number;
  /** Upload requests in flight at once while the replica is empty (a first sync); 1 when absent. */
  firstSyncInFlight?: number;
  runBudgetSeconds: number;
  verificationPeriodHours: number;
  /** Seconds between runs, for sizing verification slices. */
  intervalSeconds: number;
  quarantine: QuarantineRetry;
}

export interface TableSyncDeps {
  local: LocalStores;
  /** The agent's clock (epoch ms) for quarantine backoffs; injected by tests. */
  now: () => number;
  /** The budget of each run (run-budget.ts). */
  budget: RunBudgetFactory;
  remote: Remote;
  metrics: AgentMetrics;
  log: Logger;
  settings: TableSyncSettings;
  /** Live progress of uploads (`sync --once` on a terminal); absent in the daemon. */
  progress?: ProgressListener | undefined;
}

export interface RunOptions {
  /** Compare counts even if the delete counter did not move (first run, `sync --once`). */
  checkCount: boolean;
  /** Verify the whole table now ('hash'), as `tidemark verify` does. */
  verifyAll?: boolean;
  /** With verifyAll: report differences, repair nothing. */
  dryRun?: boolean;
}

export interface TableRunResult {
  table: string;
  converged: boolean;
  rowsUploaded: number;
  /** Bytes of COPY text the server applied (before gzip), and the batches that carried them. */
  bytesUploaded: number;
  batches: number;
  rowsDeleted: number;
  quarantined: number;
  localCount: number | null;
  remoteCount: number;
  localMaxVersion: string | null;
  remoteMaxVersion: string | null;
  durationSeconds: number;
  /** Differences found by a verification or a count check (verify, resync, deletes). */
  diff?: DiffReport;
  error?: { code: string; message: string };
}

/** One table run in progress. */
export interface RunContext {
  deps: TableSyncDeps;
  table: LocalTable;
  snap: LocalSnapshot;
  uploader: Uploader;
  /** Keys (JSON) quarantined when the run began; rows that reach the server leave quarantine. */
  quarantinedKeys: Set<string>;
  /** The table's state as the run found it (read once). */
  state: TableStateRow;
  result: TableRunResult;
  log: Logger;
}

/** Keys per request when uploading or deleting rows by key. */
export const KEY_CHUNK = 5000;

export function big(v: string | null | undefined): bigint | null {
  return v === null || v === undefined ? null : BigInt(v);
}

export function emptyResult(table: string): TableRunResult {
  return {
    table,
    converged: false,
    rowsUploaded: 0,
    bytesUploaded: 0,
    batches: 0,
    rowsDeleted: 0,
    quarantined: 0,
    localCount: null,
    remoteCount: 0,
    localMaxVersion: null,
    remoteMaxVersion: null,
    durationSeconds: 0,
  };
}

export function incompleteError(settings: TableSyncSettings): { code: string; message: string } {
  return { code: ErrorCode.RUN_INCOMPLETE, message: `run budget (${settings.runBudgetSeconds} s) used up; continuing next run` };
}

/** Counts an upload's rows; one cut short by the budget leaves the run incomplete (not converged). */
export function addUpload(ctx: RunContext, s: UploadStats): void {
  ctx.result.rowsUploaded += s.rows;
  ctx.result.bytesUploaded += s.bytes;
  ctx.result.batches += s.batches;
  if (s.unconfirmed > 0)
    ctx.result.error = {
      code: ErrorCode.SERVER_UNAVAILABLE,
      message: `${s.unconfirmed} row(s) met a timeout or server error and the server did not answer since; sent again next run`,
    };
  else if (!s.complete) ctx.result.error ??= incompleteError(ctx.deps.settings);
}

/** A bounded label for a failure: tidemark's own code, the class of a database error, or TM_INTERNAL. */
export function errorCodeOf(e: unknown): ErrorCode {
  if (e instanceof TidemarkError) return e.code;
  const c = classifyPgError(e);
  return c.sqlstate === undefined ? ErrorCode.INTERNAL : c.code;
}
