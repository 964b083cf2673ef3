/**
 * The phases of a run that compare and mend rather than stream: retrying quarantined rows, the
 * bisection of a range with the manifest diff, repairing what it found, a whole-table
 * verification (`verify`, a resync, a restored database), and the next slice of the rolling one.
 */
import { toError } from '../shared/errors.js';
import { type Bound, formatTableName, type KeyRange, type TableSummary } from '../shared/protocol.js';
import type { QuarantinedRow } from './local/quarantine-store.js';
import { DEFAULT_DIFF, type DiffOptions, type DiffReport, diffRange, type RowDiff } from './manifest-diff.js';
import { addUpload, KEY_CHUNK, type RunContext, type RunOptions } from './run-context.js';
import { sliceDue } from './verify-schedule.js';

/** Bisection with its figures counted in the metrics. */
export async function diff(ctx: RunContext, range: KeyRange, options: Omit<DiffOptions, 'expectedRows'> & { expectedRows?: number }): Promise<DiffReport> {
  const { snap } = ctx;
  // The planner's row estimate sizes the first level when the caller knows no better.
  const expectedRows = options.expectedRows ?? (await snap.estimatedRows());
  const report = await diffRange(snap, ctx.deps.remote, range, { ...options, expectedRows });
  ctx.deps.metrics.rowsCompared.inc({ table: ctx.result.table }, report.rowsCompared);
  return report;
}

/** Retries the quarantined rows (`all`, as the run found them) that are due; returns how many stay quarantined. */
export async function retryQuarantine(ctx: RunContext, all: readonly QuarantinedRow[]): Promise<number> {
  const { table, snap, uploader, deps } = ctx;
  // Due: the backoff is over, or the row changed locally (fixed, or deleted) since it failed.
  if (all.length === 0) return 0;
  const versions = await snap.versionsByKeys(all.map((q) => q.key));
  const now = deps.now();
  const due = all.filter((q) => q.nextRetryAt.getTime() <= now || versions.get(JSON.stringify(q.key)) !== q.version);
  if (due.length === 0) return all.length;
  const keys = due.map((q) => q.key);
  const applied: string[][] = [];
  for (let i = 0; i < keys.length; i += KEY_CHUNK) {
    const chunk = keys.slice(i, i + KEY_CHUNK);
    const s = await uploader.upload(await snap.copyOutKeys(chunk), { collectKeys: true });
    addUpload(ctx, s);
    applied.push(...(s.appliedKeys ?? []));
  }
  // Released: rows the server took, and rows that no longer exist locally (nothing left to send).
  const appliedSet = new Set(applied.map((k) => JSON.stringify(k)));
  const release = keys.filter((k) => appliedSet.has(JSON.stringify(k)) || !versions.has(JSON.stringify(k)));
  await deps.local.quarantine.release(table.name, release);
  for (const k of release) ctx.quarantinedKeys.delete(JSON.stringify(k));
  if (release.length) deps.log.info({ table: formatTableName(table.name), rows: release.length }, 'quarantined rows resolved');
  return all.length - release.length;
}

/** Uploads missing and changed rows, deletes extra ones (by key and version). */
export async function repair(ctx: RunContext, found: RowDiff, reason: 'manifest' | 'resync'): Promise<TableSummary> {
  const { remote, metrics } = ctx.deps;
  const { table, snap, uploader, result } = ctx;
  const label = result.table;
  let summary: TableSummary | null = null;
  if (found.missing.length || found.changed.length || found.extra.length)
    metrics.manifestMismatches.inc({ table: label }, found.missing.length + found.changed.length + found.extra.length);
  const deleteKeys = async (rows: { key: string[]; version: string }[]): Promise<void> => {
    for (let i = 0; i < rows.length; i += KEY_CHUNK) {
      const del = await remote.delete(table.name, { keys: rows.slice(i, i + KEY_CHUNK) });
      result.rowsDeleted += del.rowsDeleted;
      metrics.rowsDeleted.inc({ table: label, reason }, del.rowsDeleted);
      summary = del.summary;
    }
  };
  const uploadKeys = async (keys: string[][]): Promise<void> => {
    for (let i = 0; i < keys.length; i += KEY_CHUNK) addUpload(ctx, await uploader.upload(await snap.copyOutKeys(keys.slice(i, i + KEY_CHUNK))));
  };
  // Deletes are by key and version, so a newer row an upload placed meanwhile stays.
  await deleteKeys(found.extra);
  // Changed rows the server holds at a higher version than ours (after a restore or a move to a
  // new cluster) would be kept by its version guard: they are deleted (by key and version) and sent
  // after the others, so the replica is short of only these rows, and only for a moment.
  const superseded = found.superseded ?? [];
  const later = new Set(superseded.map((r) => JSON.stringify(r.key)));
  const keys = [...found.missing, ...found.changed];
  await uploadKeys(keys.filter((k) => !later.has(JSON.stringify(k))));
  if (superseded.length) {
    await deleteKeys(superseded);
    await uploadKeys(superseded.map((r) => r.key));
  }
  return keys.length || !summary ? remote.summary(table.name) : summary;
}

/**
 * Compares the whole table (hash mode) and repairs the differences, or with dryRun only reports
 * them; a resync reports its progress to the server.
 */
export async function verifyAll(ctx: RunContext, reason: 'manifest' | 'resync', options: RunOptions): Promise<TableSummary> {
  const { remote, metrics } = ctx.deps;
  const { table, snap, result } = ctx;
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
    const found = await diff(
      ctx,
      { lower: null, upper: null },
      {
        ...DEFAULT_DIFF,
        mode: 'hash',
        onProgress: (p) => {
          metrics.verificationProgress.set({ table: result.table }, p);
          pendingReport = pendingReport.then(() => report(p)).catch(() => {});
        },
      },
    );
    await pendingReport;
    result.diff = found;
    let summary: TableSummary;
    if (options.dryRun) summary = await remote.summary(table.name);
    else {
      await repair(ctx, found, reason);
      // A full pass is the moment to refresh the server's O(1) figures from its rows (edits behind
      // tidemark's back make them drift); the local count runs meanwhile.
      [summary, result.localCount] = await Promise.all([remote.recount(table.name), snap.count()]);
    }
    if (!options.dryRun) await releaseVerified(ctx, found);
    const repaired = found.missing.length + found.changed.length + found.extra.length;
    if (isResync) summary = await remote.reportResync(table.name, { status: 'done', progress: 1, rowsRepaired: repaired });
    return summary;
  } catch (e) {
    if (isResync)
      await remote.reportResync(table.name, { status: 'failed', progress: 0, rowsRepaired: 0, error: toError(e).message.slice(0, 4000) }).catch(() => {});
    throw e;
  }
}

/**
 * After a whole-table comparison, a quarantined row that the comparison found equal on both sides
 * (neither missing nor changed) is on the server: it leaves quarantine.
 */
async function releaseVerified(ctx: RunContext, found: RowDiff): Promise<void> {
  if (ctx.quarantinedKeys.size === 0) return;
  const differing = new Set([...found.missing, ...found.changed].map((k) => JSON.stringify(k)));
  const equal = [...ctx.quarantinedKeys].filter((k) => !differing.has(k));
  if (equal.length === 0) return;
  await ctx.deps.local.quarantine.release(
    ctx.table.name,
    equal.map((k) => JSON.parse(k) as string[]),
  );
  for (const k of equal) ctx.quarantinedKeys.delete(k);
  ctx.deps.log.info({ table: ctx.result.table, rows: equal.length }, 'quarantined rows found equal on the server');
}

/**
 * Verifies the next slice of the rolling pass (hash mode) when the pace of a pass per period owes
 * one (verify-schedule.ts); null when none is owed or nothing differed.
 */
export async function verifySlice(ctx: RunContext): Promise<TableSummary | null> {
  const { local, settings, metrics, log } = ctx.deps;
  const { table, snap, state, result } = ctx;
  const estimate = Math.max(await snap.estimatedRows(), 1);
  const now = ctx.deps.now();
  const due = sliceDue(now, { passStartedAt: state.verifyPassStartedAt, rowsDone: state.verifyRowsDone }, estimate, settings.verificationPeriodHours);
  if (!due) return null;
  const sliceRows = due.rows;
  const lower: Bound | null = state.verifyCursor;
  const range: KeyRange = { lower, upper: null };
  const end = await snap.nthBound(range, sliceRows);
  const slice: KeyRange = { lower, upper: end };
  const found = await diff(ctx, slice, { ...DEFAULT_DIFF, mode: 'hash', expectedRows: sliceRows });
  let summary: TableSummary | null = null;
  if (found.missing.length || found.changed.length || found.extra.length) {
    result.diff = found;
    log.warn(
      { table: result.table, missing: found.missing.length, changed: found.changed.length, extra: found.extra.length },
      'verification found differences',
    );
    summary = await repair(ctx, found, 'manifest');
  }
  const done = end === null;
  const rowsDone = done ? 0 : state.verifyRowsDone + sliceRows;
  await local.state.save(table.name, {
    verifyCursor: end,
    verifyPassStartedAt: done ? new Date(now) : due.passStartedAt,
    verifyRowsDone: rowsDone,
  });
  metrics.verificationProgress.set({ table: result.table }, done ? 1 : Math.min(1, rowsDone / estimate));
  return summary;
}
