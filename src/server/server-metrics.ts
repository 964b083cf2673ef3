import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

import { registerBuildInfo } from '../shared/metrics/build-info.js';
import { MetricName } from '../shared/metrics/names.js';
import { type FleetMetricsSource, registerFleetMetrics } from './fleet-metrics.js';

export interface ServerMetrics {
  registry: Registry;
  requestDuration: Histogram<'route' | 'method' | 'status_class'>;
  rowsIngested: Counter;
  rowsDeleted: Counter<'reason'>;
  payloadBytes: Counter;
  staleRows: Counter;
  authFailures: Counter<'outcome'>;
}

/** Labels: route templates, methods, status classes and delete kinds only; never tenants or keys. */
export function createServerMetrics(sources: {
  activeTenants: () => Promise<number>;
  pool: () => { total: number; idle: number; waiting: number };
  /** Per-database and fleet-wide health (fleet-metrics.ts); absent: not exported. */
  fleet?: FleetMetricsSource;
}): ServerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerBuildInfo(registry, 'server');
  // Pool figures are read first: the tenant count below checks out a connection while it runs.
  new Gauge({
    name: MetricName.serverDbPoolConnections,
    help: 'Cloud database pool connections by state (total, idle, waiting clients).',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      const s = sources.pool();
      this.set({ state: 'total' }, s.total);
      this.set({ state: 'idle' }, s.idle);
      this.set({ state: 'waiting' }, s.waiting);
    },
  });
  new Gauge({
    name: MetricName.serverActiveTenants,
    help: 'Registered databases (tenants).',
    registers: [registry],
    async collect() {
      this.set(await sources.activeTenants());
    },
  });
  const rowsDeleted = new Counter({
    name: MetricName.serverRowsDeletedTotal,
    help: 'Replica rows deleted, by request kind (keys, above_version, all).',
    labelNames: ['reason'],
    registers: [registry],
  });
  for (const reason of ['keys', 'above_version', 'all']) rowsDeleted.inc({ reason }, 0);
  const authFailures = new Counter({
    name: MetricName.serverAuthFailuresTotal,
    help: 'Failed authentications: rejected (unknown key, 401) or throttled (429, too many failures from the address or on the key prefix).',
    labelNames: ['outcome'],
    registers: [registry],
  });
  for (const outcome of ['rejected', 'throttled']) authFailures.inc({ outcome }, 0);
  if (sources.fleet) registerFleetMetrics(registry, sources.fleet);
  return {
    registry,
    requestDuration: new Histogram({
      name: MetricName.serverHttpRequestDurationSeconds,
      help: 'HTTP request duration by route template, method and status class.',
      labelNames: ['route', 'method', 'status_class'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    rowsIngested: new Counter({ name: MetricName.serverRowsIngestedTotal, help: 'Rows applied by uploads.', registers: [registry] }),
    rowsDeleted,
    authFailures,
    payloadBytes: new Counter({ name: MetricName.serverPayloadBytesTotal, help: 'Upload body bytes received (before decompression).', registers: [registry] }),
    staleRows: new Counter({
      name: MetricName.serverStaleRowsTotal,
      help: 'Uploaded rows not applied because the replica already held a newer version (late or replayed uploads).',
      registers: [registry],
    }),
  };
}
