/**
 * The fleet's messages (README, Operating a fleet): the run report an agent sends after a tick
 * (POST .../databases/{databaseId}/report), and the admin fleet views built from the reports
 * (GET /v1/admin/fleet, GET .../databases/{databaseId}/detail), as zod schemas with inferred types.
 */
import { z } from 'zod';

import { clientIdSchema } from './identifiers.js';
import { resyncStateSchema } from './table-messages.js';

/** Most tables one run report may carry (a tenant's table quota is below it). */
export const MAX_REPORT_TABLES = 10_000;
/** Quarantined rows listed per table in a report (the count is exact, the list a sample). */
export const MAX_REPORTED_QUARANTINE = 5;
/** Runs the server keeps per database (the oldest go first). */
export const RUN_HISTORY_LIMIT = 100;

/**
 * A table's outcome in one run: `ok` (converged), `behind` (no error, but not level yet: budget
 * used up, rows waiting for a retry), `error` (the run failed with `errorCode`).
 */
export const tableOutcomeSchema = z.enum(['ok', 'behind', 'error']);
export type TableOutcome = z.infer<typeof tableOutcomeSchema>;

/**
 * A database's state, worst first: `never` (no agent ever reported), `silent` (no report nor
 * request within the silence threshold), `error` (a table's last run failed), `quarantine` (rows are
 * quarantined), `behind` (a table is not level), `resyncing` (a requested resync is not done), `ok`.
 */
export const FLEET_STATES = ['never', 'silent', 'error', 'quarantine', 'behind', 'resyncing', 'ok'] as const;
export const fleetStateSchema = z.enum(FLEET_STATES);
export type FleetState = z.infer<typeof fleetStateSchema>;

/** A table's schema state (from the schema checks; `blocked` while the replica refuses the local shape). */
export const schemaStateSchema = z.object({ state: z.string().max(40), at: z.string().nullable(), reason: z.string().max(2000).nullable() });
export type SchemaState = z.infer<typeof schemaStateSchema>;

export const quarantinedSampleSchema = z.object({
  /** The row's key values as text, in key column order. */
  key: z.array(z.string().max(1024)).max(32),
  error: z.string().max(2000),
  attempts: z.number().int().min(0),
});
export type QuarantinedSample = z.infer<typeof quarantinedSampleSchema>;

/** One table in a run report. */
export const tableReportSchema = z.object({
  table: z.string().min(1).max(300),
  outcome: tableOutcomeSchema,
  errorCode: z.string().max(64).nullable(),
  errorMessage: z.string().max(2000).nullable(),
  rowsUploaded: z.number().int().min(0),
  rowsDeleted: z.number().int().min(0),
  /** Rows found different by a verification or count check in this run (0 when none ran). */
  rowsMismatched: z.number().int().min(0),
  quarantinedRows: z.number().int().min(0),
  quarantined: z.array(quarantinedSampleSchema).max(MAX_REPORTED_QUARANTINE),
  /** Seconds the cloud copy is behind (the agent's tidemark_agent_lag_seconds), null when unknown. */
  lagSeconds: z.number().min(0).nullable(),
  /** Local rows the copy lacks by count (0 when converged), null when the run did not count. */
  rowsBehind: z.number().int().min(0).nullable(),
  localCount: z.number().int().min(0).nullable(),
  localMaxVersion: z.string().max(20).nullable(),
  remoteCount: z.number().int().nullable(),
  remoteMaxVersion: z.string().max(21).nullable(),
  durationSeconds: z.number().min(0),
  schemaState: schemaStateSchema.nullable(),
});
export type TableReport = z.infer<typeof tableReportSchema>;

/** POST /v1/customers/{clientId}/databases/{databaseId}/report: what one tick did, all tables at once. */
export const runReportSchema = z.object({
  agentVersion: z.string().min(1).max(64),
  /** ISO time the tick started (the agent's clock). */
  startedAt: z.string().max(40),
  durationSeconds: z.number().min(0),
  /** Seconds the local snapshot horizon has been held back by one open transaction (0 when none), null when unknown. */
  horizonAgeSeconds: z.number().min(0).nullable(),
  /** True when sent only because the heartbeat was due (nothing changed since the last report). */
  heartbeat: z.boolean(),
  /**
   * True when `tables` is every table the agent syncs (a scheduled tick, not a run of some tables):
   * the server then forgets the reports of tables it no longer names (untracked, or dropped from
   * the agent's `tables`). Absent from agents before it: nothing is forgotten.
   */
  complete: z.boolean().optional(),
  tables: z.array(tableReportSchema).max(MAX_REPORT_TABLES),
});
export type RunReport = z.infer<typeof runReportSchema>;

export const runReportResultSchema = z.object({ recorded: z.boolean() });
export type RunReportResult = z.infer<typeof runReportResultSchema>;

/** One database in GET /v1/admin/fleet. */
export const fleetDatabaseSchema = z.object({
  clientId: z.string(),
  databaseId: z.string(),
  name: z.string(),
  agentVersion: z.string().nullable(),
  /** When the agent last reported (ISO), null when it never did. */
  lastReportAt: z.string().nullable(),
  /** The last report in which every table was ok (ISO). */
  lastSuccessAt: z.string().nullable(),
  state: fleetStateSchema,
  /** Worst table lag of the last report, seconds. */
  lagSeconds: z.number().nullable(),
  rowsBehind: z.number().nullable(),
  quarantinedRows: z.number(),
  tables: z.number(),
  /** The first failing table's error code, when the state is error. */
  errorCode: z.string().nullable(),
});
export type FleetDatabase = z.infer<typeof fleetDatabaseSchema>;

/** GET /v1/admin/fleet?client=&state= : worst first (state order above, then lag, largest first). */
export const fleetListSchema = z.object({ databases: z.array(fleetDatabaseSchema) });
export type FleetList = z.infer<typeof fleetListSchema>;

export const fleetQuerySchema = z.object({ client: clientIdSchema.optional(), state: fleetStateSchema.optional() });
export type FleetQuery = z.infer<typeof fleetQuerySchema>;

export const fleetTableDetailSchema = z.object({
  table: z.string(),
  localCount: z.number().nullable(),
  localMaxVersion: z.string().nullable(),
  remoteCount: z.number().nullable(),
  remoteMaxVersion: z.string().nullable(),
  lastOutcome: tableOutcomeSchema.nullable(),
  errorCode: z.string().nullable(),
  errorMessage: z.string().nullable(),
  quarantined: z.array(quarantinedSampleSchema),
  lagSeconds: z.number().nullable(),
  schemaState: schemaStateSchema.nullable(),
  resync: resyncStateSchema.nullable(),
});
export type FleetTableDetail = z.infer<typeof fleetTableDetailSchema>;

export const fleetRunTableSchema = z.object({
  table: z.string(),
  outcome: tableOutcomeSchema,
  errorCode: z.string().nullable(),
  rowsUploaded: z.number(),
  rowsDeleted: z.number(),
});

export const fleetRunSchema = z.object({
  /** ISO time the run started. */
  at: z.string(),
  durationSeconds: z.number(),
  /** The run's worst table outcome. */
  outcome: tableOutcomeSchema,
  tables: z.array(fleetRunTableSchema),
});
export type FleetRun = z.infer<typeof fleetRunSchema>;

/** GET /v1/admin/customers/{clientId}/databases/{databaseId}/detail; runs newest first, at most RUN_HISTORY_LIMIT. */
export const fleetDetailSchema = z.object({
  database: fleetDatabaseSchema,
  tables: z.array(fleetTableDetailSchema),
  runs: z.array(fleetRunSchema),
});
export type FleetDetail = z.infer<typeof fleetDetailSchema>;
