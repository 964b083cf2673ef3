import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

import { registerBuildInfo } from '../shared/metrics/build-info.js';
import { MetricName } from '../shared/metrics/names.js';

/** The agent's metrics. Labels: configured table names, outcomes, error classes and codes only. */
export interface AgentMetrics {
  registry: Registry;
  batchSizeRows: Gauge<'table'>;
  batchSizeBytes: Gauge<'table'>;
  batchDuration: Histogram<'table' | 'outcome'>;
  rowsUploaded: Counter<'table'>;
  bytesUploaded: Counter<'table'>;
  rowsDeleted: Counter<'table' | 'reason'>;
  batchFailures: Counter<'table' | 'error_class'>;
  skipAheads: Counter<'table'>;
  quarantinedRows: Gauge<'table'>;
  versionLag: Gauge<'table'>;
  lagSeconds: Gauge<'table'>;
  runDuration: Histogram<'table'>;
  lastSuccess: Gauge<'table'>;
  syncErrors: Counter<'table' | 'code'>;
  manifestMismatches: Counter<'table'>;
  rowsCompared: Counter<'table'>;
  verificationProgress: Gauge<'table'>;
  runsSkipped: Counter;
}

export function createAgentMetrics(tables: readonly string[] = []): AgentMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerBuildInfo(registry, 'agent');
  const r = [registry];
  const m: AgentMetrics = {
    registry,
    batchSizeRows: new Gauge({
      name: MetricName.agentBatchSizeRows,
      help: 'Rows limit of the next upload batch, as tuned.',
      labelNames: ['table'],
      registers: r,
    }),
    batchSizeBytes: new Gauge({
      name: MetricName.agentBatchSizeBytes,
      help: 'Bytes limit of the next upload batch, as tuned.',
      labelNames: ['table'],
      registers: r,
    }),
    batchDuration: new Histogram({
      name: MetricName.agentBatchDurationSeconds,
      help: 'Upload batch request duration, by outcome (ok, failed, rejected).',
      labelNames: ['table', 'outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64],
      registers: r,
    }),
    rowsUploaded: new Counter({
      name: MetricName.agentRowsUploadedTotal,
      help: 'Rows uploaded and applied by the server.',
      labelNames: ['table'],
      registers: r,
    }),
    bytesUploaded: new Counter({
      name: MetricName.agentBytesUploadedTotal,
      help: 'COPY text bytes uploaded (before compression).',
      labelNames: ['table'],
      registers: r,
    }),
    rowsDeleted: new Counter({
      name: MetricName.agentRowsDeletedTotal,
      help: 'Remote rows deleted, by reason (above_version, manifest, resync).',
      labelNames: ['table', 'reason'],
      registers: r,
    }),
    batchFailures: new Counter({
      name: MetricName.agentBatchFailuresTotal,
      help: 'Failed upload batches, by error class (timeout, too_large, server_error, network, rejected, ...).',
      labelNames: ['table', 'error_class'],
      registers: r,
    }),
    skipAheads: new Counter({
      name: MetricName.agentSkipAheadsTotal,
      help: 'Batches skipped after failing at the minimum size.',
      labelNames: ['table'],
      registers: r,
    }),
    quarantinedRows: new Gauge({ name: MetricName.agentQuarantinedRows, help: 'Rows waiting in quarantine for a retry.', labelNames: ['table'], registers: r }),
    versionLag: new Gauge({
      name: MetricName.agentVersionLag,
      help: 'Local max version minus remote max version (transactions).',
      labelNames: ['table'],
      registers: r,
    }),
    lagSeconds: new Gauge({
      name: MetricName.agentLagSeconds,
      help: 'Seconds the remote copy is behind: local minus remote max modified time, or time since both last matched.',
      labelNames: ['table'],
      registers: r,
    }),
    runDuration: new Histogram({
      name: MetricName.agentRunDurationSeconds,
      help: 'Duration of one table run.',
      labelNames: ['table'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: r,
    }),
    lastSuccess: new Gauge({
      name: MetricName.agentLastSuccessTimestampSeconds,
      help: 'Unix time of the last run that converged.',
      labelNames: ['table'],
      registers: r,
    }),
    syncErrors: new Counter({
      name: MetricName.agentSyncErrorsTotal,
      help: 'Table runs that failed, by error code.',
      labelNames: ['table', 'code'],
      registers: r,
    }),
    manifestMismatches: new Counter({
      name: MetricName.agentManifestMismatchesTotal,
      help: 'Manifest ranges that differed between local and remote.',
      labelNames: ['table'],
      registers: r,
    }),
    rowsCompared: new Counter({
      name: MetricName.agentRowsComparedTotal,
      help: 'Rows compared one by one after bisection.',
      labelNames: ['table'],
      registers: r,
    }),
    verificationProgress: new Gauge({
      name: MetricName.agentVerificationProgressRatio,
      help: 'Share of the table covered by the current rolling verification pass (0..1).',
      labelNames: ['table'],
      registers: r,
    }),
    runsSkipped: new Counter({ name: MetricName.agentRunsSkippedTotal, help: 'Ticks skipped because the previous run was still going.', registers: r }),
  };
  for (const table of tables) initTableMetrics(m, table);
  return m;
}

/** Counters start at 0 for every table, so that rate() sees their first increase. Idempotent. */
export function initTableMetrics(m: AgentMetrics, table: string): void {
  m.rowsUploaded.inc({ table }, 0);
  m.bytesUploaded.inc({ table }, 0);
  m.skipAheads.inc({ table }, 0);
  m.manifestMismatches.inc({ table }, 0);
  m.rowsCompared.inc({ table }, 0);
  for (const reason of ['above_version', 'manifest', 'resync']) m.rowsDeleted.inc({ table, reason }, 0);
}
