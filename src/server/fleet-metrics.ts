/**
 * Per-database health as Prometheus series (README, Operating a fleet), computed from one cached
 * snapshot of the fleet's facts (fleet-store.ts): a scrape reuses the snapshot for `refreshSeconds`,
 * so N databases cost one query per refresh, not N per scrape.
 *
 * Labels `client` and `database` (the database id) depart from the rule that server series carry no
 * tenant (STYLE.md, Metrics): the fleet's health is per database by nature. Their number is bounded
 * by the registered databases: 11 series per database (110 000 at 10 000 databases), plus a few
 * fleet-wide ones. `fleetMetricsPerDatabase: false` drops the per-database series and keeps the
 * fleet-wide ones (databases by state, worst lag, quarantined rows, pending resyncs).
 */
import { Counter, Gauge, type Registry } from 'prom-client';

import { MetricName } from '../shared/metrics/names.js';
import { FLEET_STATES } from '../shared/protocol.js';
import { agentUp, type FleetClock, type FleetFacts, fleetState } from './fleet-state.js';
import type { FleetStore } from './fleet-store.js';

export interface FleetMetricsSource {
  store: Pick<FleetStore, 'facts'>;
  silentAfterSeconds: number;
  /** Epoch ms. */
  now: () => number;
  perDatabase: boolean;
  /** Seconds a snapshot is reused for (0: every scrape queries). */
  refreshSeconds: number;
}

interface Snapshot {
  at: number;
  facts: FleetFacts[];
}

/** The facts, read at most once per `refreshSeconds`; concurrent scrapes (and the gauges of one scrape) share one read. */
export class FleetSnapshot {
  private last: Snapshot | null = null;
  private pending: Promise<Snapshot> | null = null;

  constructor(private readonly source: Pick<FleetMetricsSource, 'store' | 'now' | 'refreshSeconds'>) {}

  async get(): Promise<Snapshot> {
    const now = this.source.now();
    if (this.last && now - this.last.at < this.source.refreshSeconds * 1000) return this.last;
    this.pending ??= this.source.store
      .facts()
      .then(
        (facts) => {
          this.last = { at: now, facts };
          return this.last;
        },
        // The cloud database is away: the last snapshot (or none) rather than a failed scrape; the
        // next scrape tries again. Its age shows in the last-report series.
        () => this.last ?? { at: now, facts: [] },
      )
      .finally(() => {
        this.pending = null;
      });
    return this.pending;
  }
}

type Labels = { client: string; database: string };

const labelsOf = (f: FleetFacts): Labels => ({ client: f.clientId, database: f.databaseId });

export function registerFleetMetrics(registry: Registry, source: FleetMetricsSource): FleetSnapshot {
  const snapshot = new FleetSnapshot(source);
  const clock = (): FleetClock => ({ now: source.now(), silentAfterSeconds: source.silentAfterSeconds });

  /** A per-database gauge: reset on each scrape (databases come and go), one sample per database that has a value. */
  const perDatabase = (name: string, help: string, value: (f: FleetFacts, c: FleetClock) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ['client', 'database'],
      registers: [registry],
      async collect() {
        const { facts } = await snapshot.get();
        const c = clock();
        this.reset();
        for (const f of facts) {
          const v = value(f, c);
          if (v !== null) this.set(labelsOf(f), v);
        }
      },
    });
  };

  if (source.perDatabase) {
    const seconds = (d: Date | null): number | null => (d ? d.getTime() / 1000 : null);
    perDatabase(
      MetricName.serverDatabaseLastSuccessTimestampSeconds,
      'When the agent last reported a run in which every table was ok (absent until one).',
      (f) => seconds(f.lastSuccessAt),
    );
    perDatabase(MetricName.serverDatabaseLastReportTimestampSeconds, 'When the agent last reported (absent until it does).', (f) => seconds(f.reportedAt));
    perDatabase(MetricName.serverDatabaseAgentUp, '1 when the agent reported or made a request within fleetSilentAfterSeconds, else 0.', (f, c) =>
      agentUp(f, c) ? 1 : 0,
    );
    perDatabase(MetricName.serverDatabaseLagSeconds, 'Worst table lag of the last report, seconds.', (f) => f.lagSeconds);
    perDatabase(
      MetricName.serverDatabaseRowsBehind,
      'Local rows the cloud copy lacks by count, from the last report (tables that counted).',
      (f) => f.rowsBehind,
    );
    perDatabase(MetricName.serverDatabaseQuarantinedRows, 'Quarantined rows on the agent, from the last report.', (f) => f.quarantinedRows);
    perDatabase(MetricName.serverDatabaseTablesFailing, 'Tables whose last reported run failed (last run outcome error).', (f) => f.failing);
    perDatabase(
      MetricName.serverDatabaseTablesSchemaBlocked,
      'Tables whose replica refuses the local schema (TM_REPLICA_SCHEMA_MISMATCH, TM_REPLICA_NOT_ADMITTED or a blocked schema state).',
      (f) => f.schemaBlocked,
    );
    perDatabase(MetricName.serverDatabaseResyncPendingSeconds, 'Seconds since the oldest requested resync not yet done was requested; 0 when none.', (f, c) =>
      f.resyncSince ? Math.max(0, (c.now - f.resyncSince.getTime()) / 1000) : 0,
    );
    perDatabase(
      MetricName.serverDatabaseHorizonAgeSeconds,
      'Seconds the local snapshot horizon has been held back by one open transaction (prepared or long), from the last report.',
      (f) => f.horizonAgeSeconds,
    );
    new Counter({
      name: MetricName.serverDatabaseMismatchRunsTotal,
      help: 'Reported runs that found rows differing between the local table and the cloud copy (verification, count checks).',
      labelNames: ['client', 'database'],
      registers: [registry],
      async collect() {
        const { facts } = await snapshot.get();
        this.reset();
        for (const f of facts) this.inc(labelsOf(f), f.mismatchRuns);
      },
    });
  }

  new Gauge({
    name: MetricName.serverFleetDatabases,
    help: 'Registered databases by state (never, silent, error, quarantine, behind, resyncing, ok).',
    labelNames: ['state'],
    registers: [registry],
    async collect() {
      const { facts } = await snapshot.get();
      const c = clock();
      const counts = new Map<string, number>(FLEET_STATES.map((s) => [s, 0]));
      for (const f of facts) {
        const s = fleetState(f, c);
        counts.set(s, (counts.get(s) ?? 0) + 1);
      }
      for (const [state, n] of counts) this.set({ state }, n);
    },
  });
  new Gauge({
    name: MetricName.serverFleetMaxLagSeconds,
    help: 'Worst table lag over every database, from the last reports, seconds.',
    registers: [registry],
    async collect() {
      const { facts } = await snapshot.get();
      this.set(Math.max(0, ...facts.map((f) => f.lagSeconds ?? 0)));
    },
  });
  new Gauge({
    name: MetricName.serverFleetQuarantinedRows,
    help: 'Quarantined rows over every database, from the last reports.',
    registers: [registry],
    async collect() {
      const { facts } = await snapshot.get();
      this.set(facts.reduce((n, f) => n + f.quarantinedRows, 0));
    },
  });
  new Gauge({
    name: MetricName.serverFleetResyncsPending,
    help: 'Databases with a requested resync not yet done.',
    registers: [registry],
    async collect() {
      const { facts } = await snapshot.get();
      this.set(facts.filter((f) => f.resyncSince !== null).length);
    },
  });
  return snapshot;
}
