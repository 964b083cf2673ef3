/**
 * The phases of one run of one table (docs/design.md, One run, per table), in one local snapshot:
 *   declare the table (the server checks the schema and returns its summary; this also renews the
 *   lease); an idle run settles on this request and makes no other (docs/scaling.md, Idle runs)
 *   retry quarantined rows that are due
 *   upload rows the remote may lack: versions >= its settled xmax, or in its in-progress list
 *   delete remote rows above the local max version (a restored backup, deleted top rows)
 *   settle: tell the server the snapshot's horizon
 *   compare counts when deletes may have happened, and bisect to the rows if they differ
 *   verify the next slice of the table (rolling verification), or all of it on a requested resync
 */
import { ErrorCode, RetryableError, TidemarkError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import type { TableName, TableSummary } from '../shared/protocol.js';
import type { BatchTuner } from './batch-tuner.js';
import { countCheckReasons, countingInserts, idleSettleFor, knownStates, restoreReason } from './change-detection.js';
import type { LocalTable } from './local/local-catalog.js';
import type { TableStateRow } from './local/table-state-store.js';
import { DEFAULT_DIFF } from './manifest-diff.js';
import type { RunBudget } from './run-budget.js';
import { addUpload, big, incompleteError, type RunContext, type RunOptions, type TableRunResult, type TableSyncDeps } from './run-context.js';
import { batchReporter } from './run-progress.js';
import { acceptDeclaration, prepareDeclaration } from './schema-change.js';
import { diff, repair, retryQuarantine, verifyAll, verifySlice } from './table-repair.js';
import { uploadRanges } from './upload-ranges.js';
import { Uploader } from './uploader.js';

export interface TableRunInput {
  deps: TableSyncDeps;
  name: TableName;
  options: RunOptions;
  /** Once exhausted, no new batch starts. */
  budget: RunBudget;
  /** The table's state, read once by the caller. */
  state: TableStateRow;
  tuner: BatchTuner;
  result: TableRunResult;
  log: Logger;
  /** Reports the lag measured from the modified-time column (null without one). */
  onModifiedLag: (seconds: number | null) => void;
}

export async function runTable(input: TableRunInput): Promise<void> {
  const { deps, name, options, budget, tuner, result, log } = input;
  const { local, remote, metrics, settings } = deps;
  const label = result.table;
  const startedMs = performance.now();
  // What to declare after a local schema change, and whether it owes a whole-table comparison (schema-change.ts).
  const prepared = await prepareDeclaration(deps, name, input.state, log);
  const { table, state } = prepared;
  // Read before the snapshot: a write it counts is in the snapshot, so its row is uploaded this run.
  const counters = await local.catalog.changeCounters(name);
  const rebased = await local.tracking.rebaseFutureVersions(table);
  if (rebased > 0) log.warn({ rows: rebased }, 'rows carried versions from another cluster (a dump restored into a new one); re-stamped');
  const snap = await local.openSnapshot(table);
  // Taken, not read: a run that fails leaves no memory behind (the next one asks the server first).
  const known = knownStates(deps);
  const last = known.get(label);
  known.delete(label);
  try {
    const { snapshot } = snap;
    const stats = await snap.stats();
    const localMax = stats.maxVersion;
    result.localMaxVersion = localMax;
    // An idle run settles on its declaration: one request (change-detection.ts, idleSettleFor).
    const idle = await idleSettleFor(last, state, snapshot, localMax, rebased > 0 || options.verifyAll === true, (v) => snap.hasVersionIn(v));
    const declared = await remote.declare(name, prepared.plan.declaration, idle ?? undefined);
    await acceptDeclaration(deps, prepared);
    const idleSettled = idle !== null && declared.idleSettled === true;
    let summary: TableSummary = declared;
    const quarantinedRows = await local.quarantine.list(name, false);
    const quarantinedKeys = new Set(quarantinedRows.map((q) => JSON.stringify(q.key)));
    // A run that fails after the server took new keys leaves the counts to be compared next run.
    const counting = countingInserts(remote, () => local.state.save(name, { lastDeleteCount: null }));
    const onBatch = deps.progress ? batchReporter(deps.progress, label, await snap.estimatedRows(), summary.rowCount, startedMs) : undefined;
    const uploader = uploaderFor({ ...deps, remote: counting.remote }, table, { tuner, log, budget, quarantinedKeys, ...(onBatch ? { onBatch } : {}) });
    const ctx: RunContext = { deps, table, snap, uploader, state, quarantinedKeys, result, log };
    const resync = summary.resync !== null && (summary.resync.status === 'requested' || summary.resync.status === 'running');
    // The local database went back (a restored backup) or moved (another cluster): nothing the
    // remote settled can be trusted, and the whole table is verified (change-detection.ts).
    // Settled idle: the server's horizon was the one this state remembers, and the snapshot is past it.
    const why = idleSettled ? null : restoreReason(state, summary, snapshot.xmin, rebased);
    const restored = why !== null;
    if (restored) {
      log.warn(
        { reason: why, localHorizon: snapshot.xmin, remoteSettled: summary.settledVersion },
        'local database went back or moved; verifying the whole table',
      );
      // Owed until a verification finishes, whatever happens to this run.
      if (!state.fullVerifyPending) await local.state.save(name, { fullVerifyPending: true });
    }

    // Lag from the modified-time column: the newest local change against the newest on the server.
    const horizon = idle && idleSettled ? idle.expected : summary;
    const localModified = await stats.maxModifiedSince(horizon.settledXmax ?? horizon.settledVersion);
    input.onModifiedLag(localModified && summary.maxModified ? Math.max(0, (Date.parse(localModified) - Date.parse(summary.maxModified)) / 1000) : null);

    let complete = true;
    // 1. Quarantined rows whose retry is due.
    result.quarantined = await retryQuarantine(ctx, quarantinedRows);

    // 2. Upload what the remote may lack. A remote that holds none of the table's rows (the first
    // sync) takes plain inserts, cheaper than upserts.
    const remoteEmpty = summary.rowCount === 0 && summary.maxVersion === null;
    const saved = state.uploadResume;
    const resume =
      saved && saved.baseline.settledVersion === summary.settledVersion && saved.baseline.settledXmax === summary.settledXmax && !restored ? saved : null;
    const ranges = idleSettled ? [] : uploadRanges(summary, resume);
    // In the main (last) range, the resume point follows every batch that is through: whatever stops
    // the run (the budget, a signal, a crash, a lost link or database), the next run goes on from
    // there, and sends again at most the batches that were in flight (one; batch.firstSyncInFlight
    // in a first sync). It stays valid while the server's settled state is this baseline.
    const xip = [...new Set([...(resume?.xip ?? []), ...snapshot.xip])];
    const baseline = { settledVersion: summary.settledVersion, settledXmax: summary.settledXmax };
    let resumeSaved = saved !== null;
    const saveResume = async (last: { key: string[]; version: string }): Promise<void> => {
      await local.state.saveUploadResume(name, { after: { version: last.version, key: last.key }, xip, baseline });
      resumeSaved = true;
    };
    // Remote rows above the local max version cannot exist locally (step 3 deletes them).
    const remoteMax = big(summary.maxVersion);
    const deleteAbove = !restored && remoteMax !== null && (localMax === null || remoteMax > BigInt(localMax));
    // The settle (step 4) may go with the main range's last batch when nothing comes between them.
    const settle = { settledVersion: snapshot.xmin, settledXmax: snapshot.xmax, settledXip: snapshot.xip };
    const finalSettle = !deleteAbove && !idleSettled ? { settle, maxModified: localModified } : undefined;
    let settledWithRows: TableSummary | undefined;
    const inFlight = remoteEmpty ? (settings.firstSyncInFlight ?? 1) : 1;
    for (const [i, range] of ranges.entries()) {
      // With the budget spent, stop once this run has moved something (however long its set-up took).
      if (budget.exhausted() && result.rowsUploaded > 0) {
        complete = false;
        break;
      }
      const main = i === ranges.length - 1;
      const s = await uploader.upload(await snap.copyOut(range), {
        insertOnly: remoteEmpty,
        // A first sync keeps several batches in flight (the server stages them in parallel), each of
        // at most its share of batch.maxBytes: the agent holds no more than with one in flight.
        maxInFlight: inFlight,
        ...(inFlight > 1 ? { maxBatchBytes: Math.max(1, Math.floor(settings.tuner.maxBytes / inFlight)) } : {}),
        ...(main ? { onProgress: saveResume, ...(finalSettle && complete ? { finalSettle } : {}) } : {}),
      });
      addUpload(ctx, s);
      complete &&= s.complete;
      settledWithRows = complete ? s.settled : undefined;
    }

    // 3. Remote rows above the local max version cannot exist locally (after a restore or a move,
    // the whole-table verification below sorts them out, without emptying the replica first).
    if (deleteAbove) {
      const del = await remote.delete(name, localMax === null ? { all: true } : { aboveVersion: localMax });
      result.rowsDeleted += del.rowsDeleted;
      metrics.rowsDeleted.inc({ table: label, reason: 'above_version' }, del.rowsDeleted);
      summary = del.summary;
    }

    // 4. Settle the horizon (only once every visible row above it is up).
    if (idleSettled) await local.state.save(name, { lastSettledVersion: summary.settledVersion, lastSettledXmax: summary.settledXmax });
    else if (complete) {
      summary =
        settledWithRows ??
        (await remote.upload(name, Buffer.alloc(0), { settle, maxModified: localModified, timeoutMs: settings.batchTimeoutSeconds * 1000 })).summary;
      // Goes back with the local database: how a restored backup is told (change-detection.ts).
      await local.state.save(name, { lastSettledVersion: summary.settledVersion, lastSettledXmax: summary.settledXmax });
      if (resumeSaved) await local.state.saveUploadResume(name, null);
    }

    // 5. Counts, when rows may have gone (deletes, key changes: change-detection.ts); bisection when they differ.
    const reasons = countCheckReasons(state, counters, counting.inserted());
    const fullVerify = resync || restored || options.verifyAll === true;
    if (complete && !fullVerify && (options.checkCount || reasons.deletes || reasons.keyChanges)) {
      if (reasons.keyChanges) log.info({ serverInserted: counting.inserted() }, 'the server took more new keys than were inserted locally; comparing counts');
      summary = await checkCounts(ctx, summary);
      await local.state.save(name, { lastDeleteCount: counters.deletes, lastStatsIdentity: counters.identity, lastInsertCount: counters.inserts });
    } else if (!fullVerify) {
      // No comparison this run: the insert counter moves on; keys changed in a run cut short are
      // compared next run (a delete count never seen forces it); the mark of the first insert is undone.
      await local.state.save(name, { lastInsertCount: counters.inserts, lastDeleteCount: reasons.keyChanges ? null : state.lastDeleteCount });
    }

    // 6. Whole-table verification (resync, restore, `verify`), or the next rolling slice.
    if (complete && fullVerify) {
      summary = await verifyAll(ctx, resync ? 'resync' : 'manifest', options);
      if (!options.dryRun)
        await local.state.save(name, {
          lastDeleteCount: counters.deletes,
          lastStatsIdentity: counters.identity,
          lastInsertCount: counters.inserts,
          fullVerifyPending: false,
        });
    } else if (complete && settings.verificationPeriodHours > 0 && !budget.exhausted() && !(remoteEmpty && result.rowsUploaded > 0)) {
      // (Not in the run that ended a first sync: it has just sent every row from this snapshot; the
      // pass starts on the next run, which owes its first slice at once: docs/scaling.md, First sync.)
      summary = (await verifySlice(ctx)) ?? summary;
    }

    // Convergence: everything up, nothing quarantined, and the remote holds what the snapshot holds
    // (counts compared when the counters said rows may have gone: an idle run counts nothing).
    result.remoteCount = summary.rowCount;
    result.remoteMaxVersion = summary.maxVersion;
    if (complete) known.set(label, summary);
    const quarantined = await local.quarantine.count(name);
    metrics.quarantinedRows.set({ table: label }, quarantined);
    result.quarantined = quarantined;
    result.converged =
      complete &&
      result.error === undefined &&
      quarantined === 0 &&
      (result.localCount === null || result.localCount === summary.rowCount) &&
      (summary.maxVersion ?? null) === (localMax ?? null);
    if (!complete) result.error ??= incompleteError(settings);
    log.info(
      {
        rowsUploaded: result.rowsUploaded,
        bytesUploaded: result.bytesUploaded,
        batches: result.batches,
        rowsDeleted: result.rowsDeleted,
        quarantined,
        localCount: result.localCount,
        remoteCount: result.remoteCount,
        converged: result.converged,
        durationSeconds: (performance.now() - startedMs) / 1000,
      },
      'table synced',
    );
  } catch (e) {
    // A query or a COPY stream on a connection that died tells only "connection terminated": say why.
    const lost = snap.connectionLost;
    if (lost && !(e instanceof TidemarkError))
      throw new RetryableError(ErrorCode.DB_UNAVAILABLE, `the local database connection was lost during the run: ${lost.message}`, { cause: e });
    throw e;
  } finally {
    await snap.close();
  }
}

/** The uploader of one run (or verification) of `table`. */
export function uploaderFor(
  deps: TableSyncDeps,
  table: LocalTable,
  run: { tuner: BatchTuner; log: Logger; budget: RunBudget; quarantinedKeys: Set<string>; onBatch?: (rows: number, bytes: number) => void },
): Uploader {
  const { local, remote, metrics, settings } = deps;
  return new Uploader({
    table,
    remote,
    history: local.history,
    quarantine: local.quarantine,
    quarantineRetry: settings.quarantine,
    now: deps.now,
    metrics,
    timeoutMs: settings.batchTimeoutSeconds * 1000,
    ...run,
  });
}

/** Compares the local and remote counts; when they differ, bisects to the rows and repairs them. */
async function checkCounts(ctx: RunContext, before: TableSummary): Promise<TableSummary> {
  const { result, snap, log } = ctx;
  let summary = before;
  result.localCount = await snap.count();
  if (result.localCount !== summary.rowCount) {
    log.info({ localCount: result.localCount, remoteCount: summary.rowCount }, 'counts differ; bisecting');
    const found = await diff(
      ctx,
      { lower: null, upper: null },
      { ...DEFAULT_DIFF, mode: 'count', expectedRows: Math.max(result.localCount, summary.rowCount) },
    );
    summary = await repair(ctx, found, 'manifest');
    result.diff = found;
    // Rows agree but counts do not: the replica was edited behind tidemark's back; refresh its figures.
    if (summary.rowCount !== result.localCount) summary = await ctx.deps.remote.recount(ctx.table.name);
  }
  return summary;
}
