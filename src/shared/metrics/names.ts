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

  // Per database (labels client, database), from the agents' run reports (src/server/fleet-metrics.ts).
  serverDatabaseLastSuccessTimestampSeconds: 'tidemark_server_database_last_success_timestamp_seconds',
  serverDatabaseLastReportTimestampSeconds: 'tidemark_server_database_last_report_timestamp_seconds',
  serverDatabaseAgentUp: 'tidemark_server_database_agent_up',
  serverDatabaseLagSeconds: 'tidemark_server_database_lag_seconds',
  serverDatabaseRowsBehind: 'tidemark_server_database_rows_behind',
  serverDatabaseQuarantinedRows: 'tidemark_server_database_quarantined_rows',
  serverDatabaseTablesFailing: 'tidemark_server_database_tables_failing',
  serverDatabaseTablesSchemaBlocked: 'tidemark_server_database_tables_schema_blocked',
  serverDatabaseResyncPendingSeconds: 'tidemark_server_database_resync_pending_seconds',
  serverDatabaseHorizonAgeSeconds: 'tidemark_server_database_horizon_age_seconds',
  serverDatabaseMismatchRunsTotal: 'tidemark_server_database_mismatch_runs_total',
  // Fleet-wide, exported whatever fleetMetricsPerDatabase says.
  serverFleetDatabases: 'tidemark_server_fleet_databases',
  serverFleetMaxLagSeconds: 'tidemark_server_fleet_max_lag_seconds',
  serverFleetQuarantinedRows: 'tidemark_server_fleet_quarantined_rows',
  serverFleetResyncsPending: 'tidemark_server_fleet_resyncs_pending',
} as const;
export type MetricName = (typeof MetricName)[keyof typeof MetricName];
