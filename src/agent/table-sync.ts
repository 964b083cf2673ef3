/**
 * One run of one table (DESIGN.md, One run, per table), in one local snapshot:
 *   declare the table (the server checks the schema and returns its summary; this also renews the lease)
 *   retry quarantined rows that are due
 *   upload rows the remote may lack: versions >= its settled xmax, or in its in-progress list
 *   delete remote rows above the local max version (a restored backup, deleted top rows)
 *   settle: tell the server the snapshot's horizon
 *   compare counts when deletes may have happened, and bisect to the rows if they differ
 *   verify the next slice of the table (rolling verification), or all of it on a requested resync
 */
import { ErrorCode, TidemarkError, toError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { classifyPgError } from '../shared/pg.js';
import { type Bound, formatTableName, type KeyRange, type TableName, type TableSummary } from '../shared/protocol.js';
import { type AgentMetrics, initTableMetrics } from './agent-metrics.js';
import { BatchTuner, type TunerLimits } from './batch-tuner.js';
import type { LocalSnapshot, LocalTable, PgLocalDatabase, UploadResume } from './local-database.js';
import { DEFAULT_DIFF, type DiffOptions, type DiffReport, diffRange, type RowDiff } from './manifest-diff.js';
import type { Remote } from './remote.js';
import { Uploader, type UploadStats } from './uploader.js';

export interface TableSyncSettings {
  tuner: TunerLimits;
  batchTimeoutSeconds: number;
  runBudgetSeconds: number;
  verificationPeriodHours: number;
  /** Seconds between runs, for sizing verification slices. */
  intervalSeconds: number;
  quarantine: { retryBaseSeconds: number; retryMaxSeconds: number };
}

export interface TableSyncDeps {
  local: PgLocalDatabase;
  remote: Remote;
  metrics: AgentMetrics;
  log: Logger;
  settings: TableSyncSettings;
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

const KEY_CHUNK = 5000;
const MIN_SLICE_ROWS = 1000;

function big(v: string | null | undefined): bigint | null {
  return v === null || v === undefined ? null : BigInt(v);
}

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
      t = new BatchTuner(this.d.settings.tuner, await this.d.local.recentBatches(name, 200));
      this.tuners.set(label, t);
    }
    return t;
  }

  async run(name: TableName, options: RunOptions): Promise<TableRunResult> {
    const label = formatTableName(name);
    const started = performance.now();
    const deadline = Date.now() + this.d.settings.runBudgetSeconds * 1000;
    const { metrics } = this.d;
    const log = this.d.log.child({ table: label });
    const result = emptyResult(label);
    initTableMetrics(metrics, label);
    try {
      await this.restoreLastMatched(name, label);
      await this.runInner(name, options, deadline, result, log);
      if (result.converged) {
        const now = new Date();
        metrics.lastSuccess.set({ table: label }, now.getTime() / 1000);
        this.lastMatched.set(label, now.getTime());
        await this.d.local.markSuccess(name, now);
      }
    } catch (e) {
      const err = toError(e);
      const code = errorCodeOf(e);
      result.error = { code, message: err.message };
      metrics.syncErrors.inc({ table: label, code });
      log.warn({ code, error: err.message }, 'table run failed');
    } finally {
      result.durationSeconds = (performance.now() - started) / 1000;
      metrics.runDuration.observe({ table: label }, result.durationSeconds);
      this.updateLag(label, result);
    }
    return result;
  }

  /** After a restart, lag and last success continue from the time kept in the local database. */
  private async restoreLastMatched(name: TableName, label: string): Promise<void> {
    if (!this.firstSeen.has(label)) this.firstSeen.set(label, Date.now());
    if (this.lastMatched.has(label)) return;
    const { lastSuccessAt } = await this.d.local.tableState(name);
    if (lastSuccessAt) {
      this.lastMatched.set(label, lastSuccessAt.getTime());
      this.d.metrics.lastSuccess.set({ table: label }, lastSuccessAt.getTime() / 1000);
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

  /** Bisection with its figures counted in the metrics. */
  private async diff(snap: LocalSnapshot, range: KeyRange, options: Omit<DiffOptions, 'expectedRows'> & { expectedRows?: number }): Promise<DiffReport> {
    // The planner's row estimate sizes the first level when the caller knows no better.
    const expectedRows = options.expectedRows ?? (await snap.estimatedRows());
    const report = await diffRange(snap, this.d.remote, range, { ...options, expectedRows });
    const table = formatTableName(snap.table.name);
    this.d.metrics.rowsCompared.inc({ table }, report.rowsCompared);
    return report;
  }

  private async runInner(name: TableName, options: RunOptions, deadline: number, result: TableRunResult, log: Logger): Promise<void> {
    const { local, remote, metrics, settings } = this.d;
    const label = result.table;
    const table = await local.describe(name);
    let summary = await remote.declare(name, table.declaration);
    const snap = await local.openSnapshot(table);
    try {
      const { snapshot } = snap;
      const stats = await snap.stats();
      const localMax = stats.maxVersion;
      result.localMaxVersion = localMax;
      const tuner = await this.tuner(name);
      const uploader = new Uploader({
        table,
        local,
        remote,
        tuner,
        metrics,
        log,
        timeoutMs: settings.batchTimeoutSeconds * 1000,
        quarantine: settings.quarantine,
        deadline,
      });
      const resync = summary.resync !== null && (summary.resync.status === 'requested' || summary.resync.status === 'running');
      // The xid counter never goes back, except when the database itself went back (a restored
      // backup): then nothing the remote settled can be trusted, and the whole table is verified.
      const restored = BigInt(snapshot.xmin) < BigInt(summary.settledVersion);
      if (restored)
        log.warn({ localHorizon: snapshot.xmin, remoteSettled: summary.settledVersion }, 'local database went back in time; verifying the whole table');

      // Lag from the modified-time column: the newest local change against the newest on the server.
      const localModified = await stats.maxModifiedSince(summary.settledXmax ?? summary.settledVersion);
      this.modifiedLag.set(
        label,
        localModified && summary.maxModified ? Math.max(0, (Date.parse(localModified) - Date.parse(summary.maxModified)) / 1000) : null,
      );

      let complete = true;
      // 1. Quarantined rows whose retry is due.
      result.quarantined = await this.retryQuarantine(table, snap, uploader, result);

      // 2. Upload what the remote may lack. A remote that holds none of the table's rows (the first
      // sync) takes plain inserts, cheaper than upserts.
      const remoteEmpty = summary.rowCount === 0 && summary.maxVersion === null;
      const saved = (await local.tableState(name)).uploadResume;
      const resume =
        saved && saved.baseline.settledVersion === summary.settledVersion && saved.baseline.settledXmax === summary.settledXmax && !restored ? saved : null;
      const ranges = uploadRanges(summary, resume);
      for (const [i, range] of ranges.entries()) {
        // Past the deadline, stop once this run has moved something (however long its set-up took).
        if (Date.now() > deadline && result.rowsUploaded > 0) {
          complete = false;
          break;
        }
        const s = await uploader.upload(await snap.copyOut(range), { insertOnly: remoteEmpty });
        this.addUpload(result, s);
        complete &&= s.complete;
        // Cut short in the main (last) range: the next run goes on from its last row.
        if (!s.complete && i === ranges.length - 1 && s.lastRow) {
          await local.saveUploadResume(name, {
            after: { version: s.lastRow.version, key: s.lastRow.key },
            xip: [...new Set([...(resume?.xip ?? []), ...snapshot.xip])],
            baseline: { settledVersion: summary.settledVersion, settledXmax: summary.settledXmax },
          });
        }
      }

      // 3. Remote rows above the local max version cannot exist locally.
      const remoteMax = big(summary.maxVersion);
      if (remoteMax !== null && (localMax === null || remoteMax > BigInt(localMax))) {
        const del = await remote.delete(name, localMax === null ? { all: true } : { aboveVersion: localMax });
        result.rowsDeleted += del.rowsDeleted;
        metrics.rowsDeleted.inc({ table: label, reason: 'above_version' }, del.rowsDeleted);
        summary = del.summary;
      }

      // 4. Settle the horizon (only once every visible row above it is up).
      if (complete) {
        const settled = await remote.upload(name, Buffer.alloc(0), {
          settle: { settledVersion: snapshot.xmin, settledXmax: snapshot.xmax, settledXip: snapshot.xip },
          maxModified: localModified,
          timeoutMs: settings.batchTimeoutSeconds * 1000,
        });
        summary = settled.summary;
        if (saved) await local.saveUploadResume(name, null);
      }

      // 5. Counts, when rows may have been deleted; bisection when they differ.
      const deletes = await local.deleteCounter(name);
      const state = await local.tableState(name);
      const deletesMoved = state.lastDeleteCount !== deletes.deletes || state.lastStatsIdentity !== deletes.identity;
      const fullVerify = resync || restored || options.verifyAll === true;
      if (complete && !fullVerify && (options.checkCount || deletesMoved)) {
        result.localCount = await snap.count();
        if (result.localCount !== summary.rowCount) {
          log.info({ localCount: result.localCount, remoteCount: summary.rowCount }, 'counts differ; bisecting');
          const diff = await this.diff(
            snap,
            { lower: null, upper: null },
            { ...DEFAULT_DIFF, mode: 'count', expectedRows: Math.max(result.localCount, summary.rowCount) },
          );
          summary = await this.repair(table, snap, uploader, diff, 'manifest', result);
          result.diff = diff;
          // Rows agree but counts do not: the replica was edited behind tidemark's back; refresh its figures.
          if (summary.rowCount !== result.localCount) summary = await remote.recount(name);
        }
        await local.saveTableState(name, { lastDeleteCount: deletes.deletes, lastStatsIdentity: deletes.identity });
      }

      // 6. Whole-table verification (resync, restore, `verify`), or the next rolling slice.
      if (complete && fullVerify) {
        summary = await this.verifyAll(table, snap, uploader, resync ? 'resync' : 'manifest', options, result);
        if (!options.dryRun) await local.saveTableState(name, { lastDeleteCount: deletes.deletes, lastStatsIdentity: deletes.identity });
      } else if (complete && settings.verificationPeriodHours > 0 && Date.now() < deadline) {
        summary = (await this.verifySlice(table, snap, uploader, result)) ?? summary;
      }

      // Convergence: everything up, nothing quarantined, and the remote holds what the snapshot holds.
      if (result.localCount === null) result.localCount = await snap.count();
      result.remoteCount = summary.rowCount;
      result.remoteMaxVersion = summary.maxVersion;
      const quarantined = await local.quarantineCount(name);
      metrics.quarantinedRows.set({ table: label }, quarantined);
      result.quarantined = quarantined;
      result.converged =
        complete &&
        result.error === undefined &&
        quarantined === 0 &&
        result.localCount === summary.rowCount &&
        (summary.maxVersion ?? null) === (localMax ?? null);
      if (!complete) result.error = { code: ErrorCode.RUN_INCOMPLETE, message: `run budget of ${settings.runBudgetSeconds} s used up; continuing next run` };
      log.info(
        {
          rowsUploaded: result.rowsUploaded,
          rowsDeleted: result.rowsDeleted,
          quarantined,
          localCount: result.localCount,
          remoteCount: result.remoteCount,
          converged: result.converged,
        },
        'table synced',
      );
    } finally {
      await snap.close();
    }
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
      const { local, remote, settings } = this.d;
      const table = await local.describe(name);
      let summary = dryRun ? await remote.summary(name) : await remote.declare(name, table.declaration);
      const snap = await local.openSnapshot(table);
      try {
        const uploader = new Uploader({
          table,
          local,
          remote,
          tuner: await this.tuner(name),
          metrics: this.d.metrics,
          log: this.d.log,
          timeoutMs: settings.batchTimeoutSeconds * 1000,
          quarantine: settings.quarantine,
          deadline: Number.POSITIVE_INFINITY,
        });
        summary = await this.verifyAll(table, snap, uploader, 'manifest', { checkCount: false, verifyAll: true, dryRun }, result);
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

  /** Counts an upload's rows; one cut short by the deadline leaves the run incomplete (not converged). */
  private addUpload(result: TableRunResult, s: UploadStats): void {
    result.rowsUploaded += s.rows;
    if (!s.complete)
      result.error = { code: ErrorCode.RUN_INCOMPLETE, message: `run budget of ${this.d.settings.runBudgetSeconds} s used up; continuing next run` };
  }

  private async retryQuarantine(table: LocalTable, snap: LocalSnapshot, uploader: Uploader, result: TableRunResult): Promise<number> {
    // Due: the backoff is over, or the row changed locally (fixed, or deleted) since it failed.
    const all = await this.d.local.quarantined(table.name, false);
    if (all.length === 0) return 0;
    const versions = await snap.versionsByKeys(all.map((q) => q.key));
    const now = Date.now();
    const due = all.filter((q) => q.nextRetryAt.getTime() <= now || versions.get(JSON.stringify(q.key)) !== q.version);
    if (due.length === 0) return all.length;
    const keys = due.map((q) => q.key);
    const applied: string[][] = [];
    for (let i = 0; i < keys.length; i += KEY_CHUNK) {
      const chunk = keys.slice(i, i + KEY_CHUNK);
      const s = await uploader.upload(await snap.copyOutKeys(chunk), { collectKeys: true });
      this.addUpload(result, s);
      applied.push(...(s.appliedKeys ?? []));
    }
    // Released: rows the server took, and rows that no longer exist locally (nothing left to send).
    const appliedSet = new Set(applied.map((k) => JSON.stringify(k)));
    const release = keys.filter((k) => appliedSet.has(JSON.stringify(k)) || !versions.has(JSON.stringify(k)));
    await this.d.local.releaseQuarantine(table.name, release);
    if (release.length) this.d.log.info({ table: formatTableName(table.name), rows: release.length }, 'quarantined rows resolved');
    return all.length - release.length;
  }

  /** Uploads missing and changed rows, deletes extra ones (by key and version). */
  private async repair(
    table: LocalTable,
    snap: LocalSnapshot,
    uploader: Uploader,
    diff: RowDiff,
    reason: 'manifest' | 'resync',
    result: TableRunResult,
  ): Promise<TableSummary> {
    const { remote, metrics } = this.d;
    const label = formatTableName(table.name);
    let summary: TableSummary | null = null;
    if (diff.missing.length || diff.changed.length || diff.extra.length)
      metrics.manifestMismatches.inc({ table: label }, diff.missing.length + diff.changed.length + diff.extra.length);
    for (let i = 0; i < diff.extra.length; i += KEY_CHUNK) {
      const del = await remote.delete(table.name, { keys: diff.extra.slice(i, i + KEY_CHUNK) });
      result.rowsDeleted += del.rowsDeleted;
      metrics.rowsDeleted.inc({ table: label, reason }, del.rowsDeleted);
      summary = del.summary;
    }
    const keys = [...diff.missing, ...diff.changed];
    for (let i = 0; i < keys.length; i += KEY_CHUNK) {
      const s = await uploader.upload(await snap.copyOutKeys(keys.slice(i, i + KEY_CHUNK)));
      this.addUpload(result, s);
    }
    return keys.length || !summary ? remote.summary(table.name) : summary;
  }

  private async verifyAll(
    table: LocalTable,
    snap: LocalSnapshot,
    uploader: Uploader,
    reason: 'manifest' | 'resync',
    options: RunOptions,
    result: TableRunResult,
  ): Promise<TableSummary> {
    const { remote } = this.d;
    const isResync = reason === 'resync';
    let lastReport = 0;
    const report = async (progress: number): Promise<void> => {
      if (!isResync || Date.now() - lastReport < 1000) return;
      lastReport = Date.now();
      await remote.reportResync(table.name, { status: 'running', progress, rowsRepaired: 0 });
    };
    if (isResync) await remote.reportResync(table.name, { status: 'running', progress: 0, rowsRepaired: 0 });
    try {
      let pendingReport: Promise<void> = Promise.resolve();
      const diff = await this.diff(
        snap,
        { lower: null, upper: null },
        {
          ...DEFAULT_DIFF,
          mode: 'hash',
          onProgress: (p) => {
            this.d.metrics.verificationProgress.set({ table: result.table }, p);
            pendingReport = pendingReport.then(() => report(p)).catch(() => {});
          },
        },
      );
      await pendingReport;
      result.diff = diff;
      let summary: TableSummary;
      if (options.dryRun) summary = await remote.summary(table.name);
      else {
        await this.repair(table, snap, uploader, diff, reason, result);
        // A full pass is the moment to refresh the server's O(1) figures from its rows (edits behind
        // tidemark's back make them drift); the local count runs meanwhile.
        [summary, result.localCount] = await Promise.all([remote.recount(table.name), snap.count()]);
      }
      const repaired = diff.missing.length + diff.changed.length + diff.extra.length;
      if (isResync) summary = await remote.reportResync(table.name, { status: 'done', progress: 1, rowsRepaired: repaired });
      return summary;
    } catch (e) {
      if (isResync)
        await remote.reportResync(table.name, { status: 'failed', progress: 0, rowsRepaired: 0, error: toError(e).message.slice(0, 4000) }).catch(() => {});
      throw e;
    }
  }

  /** Verifies the next slice of the rolling pass (hash mode), sized so a pass takes the configured period. */
  private async verifySlice(table: LocalTable, snap: LocalSnapshot, uploader: Uploader, result: TableRunResult): Promise<TableSummary | null> {
    const { local, settings, metrics } = this.d;
    const state = await local.tableState(table.name);
    const estimate = Math.max(await snap.estimatedRows(), 1);
    const runsPerPass = Math.max(1, (settings.verificationPeriodHours * 3600) / settings.intervalSeconds);
    const sliceRows = Math.max(MIN_SLICE_ROWS, Math.ceil(estimate / runsPerPass));
    const lower: Bound | null = state.verifyCursor;
    const range: KeyRange = { lower, upper: null };
    const end = await snap.nthBound(range, sliceRows);
    const slice: KeyRange = { lower, upper: end };
    const diff = await this.diff(snap, slice, { ...DEFAULT_DIFF, mode: 'hash', expectedRows: sliceRows });
    let summary: TableSummary | null = null;
    if (diff.missing.length || diff.changed.length || diff.extra.length) {
      result.diff = diff;
      this.d.log.warn(
        { table: result.table, missing: diff.missing.length, changed: diff.changed.length, extra: diff.extra.length },
        'verification found differences',
      );
      summary = await this.repair(table, snap, uploader, diff, 'manifest', result);
    }
    const done = end === null;
    const rowsDone = done ? 0 : state.verifyRowsDone + sliceRows;
    await local.saveTableState(table.name, {
      verifyCursor: end,
      verifyPassStartedAt: done || !state.verifyPassStartedAt ? new Date() : state.verifyPassStartedAt,
      verifyRowsDone: rowsDone,
    });
    metrics.verificationProgress.set({ table: result.table }, done ? 1 : Math.min(1, rowsDone / estimate));
    return summary;
  }
}

function emptyResult(table: string): TableRunResult {
  return {
    table,
    converged: false,
    rowsUploaded: 0,
    rowsDeleted: 0,
    quarantined: 0,
    localCount: null,
    remoteCount: 0,
    localMaxVersion: null,
    remoteMaxVersion: null,
    durationSeconds: 0,
  };
}

/** A bounded label for a failure: tidemark's own code, the class of a database error, or TM_INTERNAL. */
function errorCodeOf(e: unknown): ErrorCode {
  if (e instanceof TidemarkError) return e.code;
  const c = classifyPgError(e);
  return c.sqlstate === undefined ? ErrorCode.INTERNAL : c.code;
}

/**
 * Versions the remote may lack: >= its settled xmax, or in progress when it settled. With a resume
 * point, the main range starts after it, and the versions in progress when it was read are added.
 */
export function uploadRanges(summary: TableSummary, resume: UploadResume | null = null): KeyRange[] {
  const from = summary.settledXmax ?? summary.settledVersion;
  const single = (x: string): KeyRange => ({ lower: { version: x, key: null }, upper: { version: (BigInt(x) + 1n).toString(), key: null } });
  const xip = new Set(summary.settledXip.filter((x) => BigInt(x) < BigInt(from)));
  if (resume) for (const x of resume.xip) if (BigInt(x) < BigInt(resume.after.version)) xip.add(x);
  const ranges = [...xip].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1)).map(single);
  ranges.push(resume ? { lower: resume.after, lowerExclusive: true, upper: null } : { lower: { version: from, key: null }, upper: null });
  return ranges;
}
