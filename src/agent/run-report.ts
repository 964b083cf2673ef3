/**
 * The run report (README, Operating a fleet): after a tick, one request tells the server what
 * happened to every table (outcome and error code, rows moved, quarantined rows with a few of their
 * keys, lag, counts and versions, schema state), with the agent's version and how long the local
 * snapshot horizon has been held back. At most one request per tick, and only when there is news —
 * an outcome, error code, quarantine count or schema state changed, rows moved, differences were
 * found — or when the last report is HEARTBEAT_SECONDS old: an idle, healthy agent reports every
 * 5 minutes. A report that fails is retried on the next tick (the news stays news). Never throws.
 */
import type pg from 'pg';

import { ErrorCode, toError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { TIDEMARK_VERSION } from '../shared/metrics/build-info.js';
import { MAX_REPORTED_QUARANTINE, parseTableName, type RunReport, type SchemaState, type TableOutcome, type TableReport } from '../shared/protocol.js';
import type { AgentMetrics } from './agent-metrics.js';
import type { LocalStores } from './local/local-stores.js';
import type { Remote } from './remote.js';
import type { TableRunResult } from './table-sync.js';

/** Seconds between two reports of an agent with no news: the server's silence threshold (fleetSilentAfterSeconds, 900) is three of them. */
export const HEARTBEAT_SECONDS = 300;

export interface RunReporterDeps {
  pool: pg.Pool;
  local: Pick<LocalStores, 'quarantine'>;
  metrics: Pick<AgentMetrics, 'lagSeconds'>;
  log: Logger;
  /** The agent's clock (epoch ms). */
  now: () => number;
}

export function outcomeOf(r: TableRunResult): TableOutcome {
  if (r.converged) return 'ok';
  if (!r.error || r.error.code === ErrorCode.RUN_INCOMPLETE) return 'behind';
  return 'error';
}

export class RunReporter {
  /** Per table, what the last report sent said (outcome, code, quarantine, schema state). */
  private sent = new Map<string, string>();
  private lastSentAt: number | null = null;
  /** Whether the last report sent named every table the agent syncs (a run of some tables does not). */
  private sentComplete = false;
  /** The oldest in-progress transaction id of the local snapshots, and since when (agent clock) it has not moved. */
  private held: { xid: string; since: number } | null = null;
  /** Since when (ISO) each table's schema has been blocked. */
  private readonly blockedSince = new Map<string, string>();

  constructor(private readonly d: RunReporterDeps) {}

  /** Builds the tick's report and sends it if there is news or the heartbeat is due. Never throws. */
  async afterTick(remote: Remote, tick: { startedAt: Date; tables: TableRunResult[]; complete: boolean }): Promise<RunReport | null> {
    // No table: nothing to say, unless the last report named tables the agent no longer syncs.
    if (!remote.report || (tick.tables.length === 0 && !(tick.complete && this.sent.size > 0))) return null;
    try {
      const report = await this.build(tick);
      const fingerprints = new Map(report.tables.map((t) => [t.table, fingerprint(t)]));
      const news =
        fingerprints.size !== this.sent.size ||
        (tick.complete && !this.sentComplete) ||
        [...fingerprints].some(([table, f]) => this.sent.get(table) !== f) ||
        report.tables.some((t) => t.rowsUploaded > 0 || t.rowsDeleted > 0 || t.rowsMismatched > 0);
      const now = this.d.now();
      const due = this.lastSentAt === null || now - this.lastSentAt >= HEARTBEAT_SECONDS * 1000;
      if (!news && !due) return null;
      report.heartbeat = !news;
      await remote.report(report);
      this.sent = fingerprints;
      this.sentComplete = tick.complete;
      this.lastSentAt = now;
      return report;
    } catch (e) {
      this.d.log.warn({ error: toError(e).message }, 'run report not sent; sent with the next tick');
      return null;
    }
  }

  private async build(tick: { startedAt: Date; tables: TableRunResult[]; complete: boolean }): Promise<RunReport> {
    const lags = new Map((await this.d.metrics.lagSeconds.get()).values.map((v) => [String(v.labels.table), v.value]));
    const tables: TableReport[] = [];
    for (const r of tick.tables) tables.push(await this.tableReport(r, lags.get(r.table) ?? null));
    const durationSeconds = Math.max(0, (Date.now() - tick.startedAt.getTime()) / 1000);
    return {
      agentVersion: TIDEMARK_VERSION,
      startedAt: tick.startedAt.toISOString(),
      durationSeconds,
      horizonAgeSeconds: await this.horizonAgeSeconds(),
      heartbeat: false,
      complete: tick.complete,
      tables,
    };
  }

  private async tableReport(r: TableRunResult, lagSeconds: number | null): Promise<TableReport> {
    const outcome = outcomeOf(r);
    const name = parseTableName(r.table);
    // A failed run may stop before it counts its quarantine: read it then.
    const quarantinedRows = outcome === 'error' ? await this.d.local.quarantine.count(name) : r.quarantined;
    const sample =
      quarantinedRows > 0
        ? (await this.d.local.quarantine.list(name, false))
            .slice(0, MAX_REPORTED_QUARANTINE)
            .map((q) => ({ key: q.key, error: q.error.slice(0, 2000), attempts: q.attempts }))
        : [];
    const d = r.diff;
    return {
      table: r.table,
      outcome,
      errorCode: outcome === 'ok' ? null : (r.error?.code ?? null),
      errorMessage: outcome === 'ok' ? null : (r.error?.message.slice(0, 2000) ?? null),
      rowsUploaded: r.rowsUploaded,
      rowsDeleted: r.rowsDeleted,
      rowsMismatched: d ? d.missing.length + d.extra.length + d.changed.length : 0,
      quarantinedRows,
      quarantined: sample,
      lagSeconds: lagSeconds === null ? null : Math.round(lagSeconds * 1000) / 1000,
      rowsBehind: r.converged ? 0 : r.localCount !== null ? Math.max(0, r.localCount - r.remoteCount) : null,
      localCount: r.localCount,
      localMaxVersion: r.localMaxVersion,
      remoteCount: r.error && r.remoteMaxVersion === null && r.remoteCount === 0 ? null : r.remoteCount,
      remoteMaxVersion: r.remoteMaxVersion,
      durationSeconds: r.durationSeconds,
      schemaState: this.schemaState(r),
    };
  }

  /**
   * Blocked while the server refuses the table's local schema (a change the union cannot take, or a
   * table the server does not admit), since the first run that met it; null otherwise (not known here).
   */
  private schemaState(r: TableRunResult): SchemaState | null {
    if (r.error?.code !== ErrorCode.REPLICA_SCHEMA_MISMATCH && r.error?.code !== ErrorCode.REPLICA_NOT_ADMITTED) {
      this.blockedSince.delete(r.table);
      return null;
    }
    const at = this.blockedSince.get(r.table) ?? new Date(this.d.now()).toISOString();
    this.blockedSince.set(r.table, at);
    return { state: 'blocked', at, reason: r.error.message.slice(0, 2000) };
  }

  /**
   * Seconds the oldest transaction that can write the tracked tables has stayed open (a long or
   * forgotten prepared transaction of this database holds back vacuum and the settled horizon): the
   * oldest transaction id held by a session of this database or prepared in it, while the same one
   * stays oldest from tick to tick. 0 when there is none or it changed; measured from the first tick
   * that saw it (so it restarts with the agent). Transactions of the cluster's other databases
   * cannot write these tables and are not counted. Null when unreadable.
   */
  private async horizonAgeSeconds(): Promise<number | null> {
    try {
      const { rows } = await this.d.pool.query<{ xid: string }>(/* sql */ `
        select x::text as xid from (
          select backend_xid as x from pg_stat_activity where datname = current_database() and backend_xid is not null
          union all
          select transaction from pg_prepared_xacts where database = current_database()
        ) held
        order by age(x) desc
        limit 1`);
      const row = rows[0];
      const now = this.d.now();
      if (!row) {
        this.held = null;
        return 0;
      }
      if (this.held?.xid !== row.xid) this.held = { xid: row.xid, since: now };
      return Math.max(0, (now - this.held.since) / 1000);
    } catch {
      return null;
    }
  }
}

function fingerprint(t: TableReport): string {
  return JSON.stringify([t.outcome, t.errorCode, t.quarantinedRows, t.schemaState?.state ?? null]);
}
