/**
 * Every metric name tidemark exports, declared once. Dashboards and alert rules may use only these
 * (a test checks it). Prometheus conventions: `_total` counters, base units (`_seconds`, `_bytes`).
 */
export const MetricName = {
  buildInfo: 'tidemark_build_info',

  agentBatchSizeRows: 'tidemark_agent_batch_size_rows',
  agentBatchSizeBytes: 'tidemark_agent_batch_size_bytes',
  agentBatchDurationSeconds: 'tidemark_agent_batch_duration_seconds',
  agentRowsUploadedTotal: 'tidemark_agent_rows_uploaded_total',
  agentBytesUploadedTotal: 'tidemark_agent_bytes_uploaded_total',
  agentRowsDeletedTotal: 'tidemark_agent_rows_deleted_total',
  agentBatchFailuresTotal: 'tidemark_agent_batch_failures_total',
  agentSkipAheadsTotal: 'tidemark_agent_skip_aheads_total',
  agentQuarantinedRows: 'tidemark_agent_quarantined_rows',
  agentVersionLag: 'tidemark_agent_version_lag',
  agentLagSeconds: 'tidemark_agent_lag_seconds',
  agentRunDurationSeconds: 'tidemark_agent_run_duration_seconds',
  agentLastSuccessTimestampSeconds: 'tidemark_agent_last_success_timestamp_seconds',
  agentSyncErrorsTotal: 'tidemark_agent_sync_errors_total',
  agentManifestMismatchesTotal: 'tidemark_agent_manifest_mismatches_total',
  agentRowsComparedTotal: 'tidemark_agent_rows_compared_total',
  agentVerificationProgressRatio: 'tidemark_agent_verification_progress_ratio',
  agentRunsSkippedTotal: 'tidemark_agent_runs_skipped_total',

  serverHttpRequestDurationSeconds: 'tidemark_server_http_request_duration_seconds',
  serverRowsIngestedTotal: 'tidemark_server_rows_ingested_total',
  serverRowsDeletedTotal: 'tidemark_server_rows_deleted_total',
  serverPayloadBytesTotal: 'tidemark_server_payload_bytes_total',
  serverActiveTenants: 'tidemark_server_active_tenants',
  serverDbPoolConnections: 'tidemark_server_db_pool_connections',
  serverStaleRowsTotal: 'tidemark_server_stale_rows_total',
  serverAuthFailuresTotal: 'tidemark_server_auth_failures_total',
} as const;
export type MetricName = (typeof MetricName)[keyof typeof MetricName];
