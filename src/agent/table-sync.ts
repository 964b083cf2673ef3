/**
 * Runs tables one run at a time (table-run.ts has the phases) and keeps what outlives a run in
 * this process: one batch tuner per table, and the figures lag is measured from. A run never
 * throws: its failure is in its result, its metrics and a log line.
 */
import { toError } from '../shared/errors.js';
import { formatTableName, type TableName } from '../shared/protocol.js';
import { initTableMetrics } from './agent-metrics.js';
import { BatchTuner } from './batch-tuner.js';
import type { TableStateRow } from './local/table-state-store.js';
import { UNLIMITED } from './run-budget.js';
import { big, emptyResult, errorCodeOf, type RunContext, type RunOptions, type TableRunResult, type TableSyncDeps } from './run-context.js';
import { verifyAll } from './table-repair.js';
import { runTable, uploaderFor } from './table-run.js';

export type { RunOptions, TableRunResult, TableSyncDeps, TableSyncSettings } from './run-context.js';
export { uploadRanges } from './upload-ranges.js';

export class TableSync {
  /** When local and remote last matched (agent clock), for lag without a modified column. */
  private readonly lastMatched = new Map<string, number>();
  /** When this process first ran each table: lag's origin until the table first converges. */
  private readonly firstSeen = new Map<string, number>();
  /** Lag measured from the modified-time column in the last run, when the table has one. */
  private readonly modifiedLag = new Map<string, number | null>();

  /** One tuner per table for the life of the process, started from the table's recorded history. */
  private readonly tuners = new Map<string, BatchTuner>();

  constructor(private readonly d: TableSyncDeps) {}

  private async tuner(name: TableName): Promise<BatchTuner> {
    const label = formatTableName(name);
    let t = this.tuners.get(label);
    if (!t) {
      t = new BatchTuner(this.d.settings.tuner, await this.d.local.history.recent(name, 200));
      this.tuners.set(label, t);
    }
    return t;
  }

  async run(name: TableName, options: RunOptions): Promise<TableRunResult> {
    const label = formatTableName(name);
    const started = performance.now();
    const { metrics } = this.d;
    const log = this.d.log.child({ table: label });
    const result = emptyResult(label);
    initTableMetrics(metrics, label);
    let lastError: string | null | undefined;
    try {
      const state = await this.d.local.state.read(name);
      lastError = state.lastError;
      this.restoreLastMatched(label, state);
      await runTable({
        deps: this.d,
        name,
        options,
        budget: this.d.budget(),
        state,
        tuner: await this.tuner(name),
        result,
        log,
        onModifiedLag: (seconds) => this.modifiedLag.set(label, seconds),
      });
      if (result.converged) {
        const now = new Date();
        metrics.lastSuccess.set({ table: label }, now.getTime() / 1000);
        this.lastMatched.set(label, now.getTime());
        await this.d.local.state.markSuccess(name, now);
      }
      if (lastError) await this.d.local.state.save(name, { lastError: null });
    } catch (e) {
      const err = toError(e);
      const code = errorCodeOf(e);
      result.error = { code, message: err.message };
      metrics.syncErrors.inc({ table: label, code });
      log.warn({ code, error: err.message }, 'table run failed');
      // Kept for `tidemark status` (agent.ts): written when it changes; not when the local database
      // itself is what failed (the state could not be read, and the write would fail too).
      const line = `${err.message} [${code}]`;
      if (lastError !== undefined && lastError !== line)
        await this.d.local.state.save(name, { lastError: line }).catch((saveError: unknown) => {
          log.warn({ error: toError(saveError).message }, 'could not record the failed run in the local state');
        });
    } finally {
      result.durationSeconds = (performance.now() - started) / 1000;
      metrics.runDuration.observe({ table: label }, result.durationSeconds);
      this.d.progress?.({
        table: label,
        rowsSent: result.rowsUploaded,
        bytesSent: result.bytesUploaded,
        batches: result.batches,
        rowsExpected: null,
        elapsedSeconds: result.durationSeconds,
        done: true,
      });
      this.updateLag(label, result);
    }
    return result;
  }

  /** After a restart, lag and last success continue from the time kept in the local database. */
  private restoreLastMatched(label: string, state: TableStateRow): void {
    if (!this.firstSeen.has(label)) this.firstSeen.set(label, Date.now());
    if (this.lastMatched.has(label)) return;
    if (state.lastSuccessAt) {
      this.lastMatched.set(label, state.lastSuccessAt.getTime());
      this.d.metrics.lastSuccess.set({ table: label }, state.lastSuccessAt.getTime() / 1000);
    }
  }

  /**
   * Lag in seconds: 0 when converged; else local minus remote max modified time (tables tracked with
   * a modified column), else the time since both last matched (or since the agent first tried).
   * Updated after every run, failed ones included, so a failing table's lag grows.
   */
  private updateLag(label: string, result: TableRunResult): void {
    const { metrics } = this.d;
    const lm = big(result.localMaxVersion);
    const rm = big(result.remoteMaxVersion);
    if (lm !== null) metrics.versionLag.set({ table: label }, Number(lm > (rm ?? 0n) ? lm - (rm ?? 0n) : 0n));
    if (result.converged) {
      metrics.lagSeconds.set({ table: label }, 0);
      return;
    }
    const byModified = this.modifiedLag.get(label);
    if (byModified !== undefined && byModified !== null) {
      metrics.lagSeconds.set({ table: label }, byModified);
      return;
    }
    const since = this.lastMatched.get(label) ?? this.firstSeen.get(label) ?? Date.now();
    metrics.lagSeconds.set({ table: label }, Math.max(0, (Date.now() - since) / 1000));
  }

  /**
   * `tidemark verify`: compares the whole table now (hash mode) and repairs the differences, or with
   * dryRun only reports them. Nothing else of a run happens (no upload from the horizon, no settle).
   */
  async verify(name: TableName, dryRun: boolean): Promise<TableRunResult> {
    const label = formatTableName(name);
    const started = performance.now();
    const result = emptyResult(label);
    try {
      const { local, remote } = this.d;
      const table = await local.catalog.describe(name);
      let summary = dryRun ? await remote.summary(name) : await remote.declare(name, table.declaration);
      const snap = await local.openSnapshot(table);
      try {
        const quarantinedKeys = new Set((await local.quarantine.list(name, false)).map((q) => JSON.stringify(q.key)));
        const uploader = uploaderFor(this.d, table, { tuner: await this.tuner(name), log: this.d.log, budget: UNLIMITED, quarantinedKeys });
        const state = await local.state.read(name);
        const ctx: RunContext = { deps: this.d, table, snap, uploader, state, quarantinedKeys, result, log: this.d.log };
        summary = await verifyAll(ctx, 'manifest', { checkCount: false, verifyAll: true, dryRun });
        result.localCount ??= await snap.count();
        result.localMaxVersion = (await snap.stats()).maxVersion;
        result.remoteCount = summary.rowCount;
        result.remoteMaxVersion = summary.maxVersion;
        const d = result.diff;
        const differences = d ? d.missing.length + d.extra.length + d.changed.length : 0;
        result.converged = dryRun ? differences === 0 : result.localCount === summary.rowCount;
      } finally {
        await snap.close();
      }
    } catch (e) {
      result.error = { code: errorCodeOf(e), message: toError(e).message };
    }
    result.durationSeconds = (performance.now() - started) / 1000;
    return result;
  }
}
