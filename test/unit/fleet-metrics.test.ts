import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';

import { registerFleetMetrics } from '../../src/server/fleet-metrics.js';
import type { FleetFacts } from '../../src/server/fleet-state.js';

const T0 = Date.parse('2026-01-01T12:00:00Z');

function facts(over: Partial<FleetFacts> = {}): FleetFacts {
  return {
    clientId: 'acme',
    databaseId: '6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10',
    name: 'Lyon',
    agentVersion: '0.1.0',
    reportedAt: new Date(T0 - 60_000),
    lastSuccessAt: new Date(T0 - 60_000),
    lastSeenAt: new Date(T0 - 60_000),
    tables: 2,
    failing: 0,
    behind: 0,
    lagSeconds: 0,
    rowsBehind: 0,
    quarantinedRows: 0,
    errorCode: null,
    schemaBlocked: 0,
    resyncSince: null,
    horizonAgeSeconds: 0,
    mismatchRuns: 0,
    ...over,
  };
}

function setup(rows: FleetFacts[], perDatabase = true) {
  const clock = { ms: T0 };
  let reads = 0;
  const registry = new Registry();
  registerFleetMetrics(registry, {
    store: {
      facts: async () => {
        reads++;
        return rows;
      },
    },
    silentAfterSeconds: 900,
    now: () => clock.ms,
    perDatabase,
    refreshSeconds: 30,
  });
  return { registry, clock, reads: () => reads };
}

describe('fleet metrics', () => {
  it('export per-database series with client and database labels, and the fleet by state', async () => {
    const rows = [
      facts(),
      facts({
        clientId: 'globex',
        databaseId: '00000000-0000-4000-8000-000000000002',
        lastSeenAt: new Date(T0 - 3600_000),
        reportedAt: new Date(T0 - 3600_000),
        lagSeconds: 420,
        quarantinedRows: 3,
        failing: 1,
        schemaBlocked: 1,
        resyncSince: new Date(T0 - 7200_000),
        horizonAgeSeconds: 5000,
        mismatchRuns: 4,
        lastSuccessAt: null,
      }),
      facts({
        clientId: 'initech',
        databaseId: '00000000-0000-4000-8000-000000000003',
        lastSeenAt: null,
        reportedAt: null,
        lastSuccessAt: null,
        lagSeconds: null,
      }),
    ];
    const { registry } = setup(rows);
    const text = await registry.metrics();
    const g = 'client="globex",database="00000000-0000-4000-8000-000000000002"';
    expect(text).toContain(`tidemark_server_database_agent_up{${g}} 0`);
    expect(text).toContain(`tidemark_server_database_agent_up{client="acme",database="6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10"} 1`);
    expect(text).toContain(`tidemark_server_database_lag_seconds{${g}} 420`);
    expect(text).toContain(`tidemark_server_database_quarantined_rows{${g}} 3`);
    expect(text).toContain(`tidemark_server_database_tables_failing{${g}} 1`);
    expect(text).toContain(`tidemark_server_database_tables_schema_blocked{${g}} 1`);
    expect(text).toContain(`tidemark_server_database_resync_pending_seconds{${g}} 7200`);
    expect(text).toContain(`tidemark_server_database_horizon_age_seconds{${g}} 5000`);
    expect(text).toContain(`tidemark_server_database_mismatch_runs_total{${g}} 4`);
    expect(text).toContain(`tidemark_server_database_last_report_timestamp_seconds{${g}} ${(T0 - 3600_000) / 1000}`);
    // Never succeeded: no sample rather than a misleading 0.
    expect(text).not.toContain(`tidemark_server_database_last_success_timestamp_seconds{${g}}`);
    expect(text).toContain('tidemark_server_fleet_databases{state="silent"} 1');
    expect(text).toContain('tidemark_server_fleet_databases{state="never"} 1');
    expect(text).toContain('tidemark_server_fleet_databases{state="ok"} 1');
    expect(text).toContain('tidemark_server_fleet_databases{state="error"} 0');
    expect(text).toContain('tidemark_server_fleet_max_lag_seconds 420');
    expect(text).toContain('tidemark_server_fleet_quarantined_rows 3');
    expect(text).toContain('tidemark_server_fleet_resyncs_pending 1');
  });

  it('read the fleet once per refresh interval, whatever the scrapes and series', async () => {
    const { registry, clock, reads } = setup([facts()]);
    await registry.metrics();
    await registry.metrics();
    expect(reads()).toBe(1);
    clock.ms += 29_000;
    await registry.metrics();
    expect(reads()).toBe(1);
    clock.ms += 1_000;
    await registry.metrics();
    expect(reads()).toBe(2);
  });

  it('keep only the fleet-wide series when per-database series are switched off', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => facts({ databaseId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}` }));
    const on = (await setup(rows).registry.getMetricsAsJSON()).reduce((n, m) => n + m.values.length, 0);
    const offRegistry = setup(rows, false).registry;
    const offText = await offRegistry.metrics();
    const off = (await offRegistry.getMetricsAsJSON()).reduce((n, m) => n + m.values.length, 0);
    expect(offText).not.toMatch(/tidemark_server_database_/);
    expect(offText).toContain('tidemark_server_fleet_databases{state="ok"} 50');
    // 11 series per database, and the 10 fleet-wide ones.
    expect(on - off).toBe(50 * 11);
    expect(off).toBe(10);
  });
});
