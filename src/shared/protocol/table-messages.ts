/**
 * The messages of the tenant table routes (README, Wire protocol), as zod schemas; the wire types
 * are inferred from them, so what the server validates and what both sides type are one thing.
 * Versions travel as decimal strings: they are 64-bit transaction ids (xid8) and JSON numbers lose
 * precision above 2^53. Every list is bounded (limits.ts), so a request's cost is bounded too.
 */
import { z } from 'zod';

import { typeNameProblem } from './column-type.js';
import { versionSchema } from './identifiers.js';
import { MAX_COLUMNS, MAX_DELETE_KEYS, MAX_KEY_COLUMNS, MAX_KEY_VALUE_BYTES, MAX_XIP } from './limits.js';
import { columnNameSchema, identifierProblem } from './table-name.js';

export const VERSION_COLUMN = 'tidemark_version';
export const TENANT_CLIENT_COLUMN = 'tidemark_client_id';
export const TENANT_DATABASE_COLUMN = 'tidemark_database_id';
export const HEADER_AGENT_ID = 'x-tidemark-agent-id';

/** A column type as `format_type()` prints it, checked by `typeNameProblem`. */
export const columnTypeSchema = z.string().superRefine((type, ctx) => {
  const problem = typeNameProblem(type);
  if (problem) ctx.addIssue({ code: 'custom', message: `type ${JSON.stringify(type)} ${problem}` });
});

/** A part of a collation's name (schema or name), checked like every identifier. */
const collationPartSchema = z.string().superRefine((part, ctx) => {
  const problem = identifierProblem(part);
  if (problem) ctx.addIssue({ code: 'custom', message: `collation name part ${JSON.stringify(part)} ${problem}` });
});

/**
 * A column's collation, when it is not its type's default (`format_type()` does not print it):
 * schema and name as in pg_catalog, e.g. `{ schema: 'public', name: 'ci' }`. The replica column
 * gets the same collation, so it compares, sorts and enforces uniqueness as the local one does.
 */
export const collationSchema = z.object({ schema: collationPartSchema, name: collationPartSchema });
export type Collation = z.infer<typeof collationSchema>;

/**
 * A tracked table's column as the agent reports it. `type` is `format_type()` output.
 * `addedDefault`: sent once, when the column was just added locally with a constant default
 * (`alter table … add column … default 5`): the stored rows hold that value without a rewrite
 * and without firing triggers, so the server sets the tenant's existing rows to it (its canonical
 * text, under the pinned output settings). Not part of the stored declaration.
 */
export const columnSpecSchema = z.object({
  name: columnNameSchema,
  type: columnTypeSchema,
  notNull: z.boolean(),
  collation: collationSchema.optional(),
  addedDefault: z
    .string()
    .max(64 * 1024)
    .refine((s) => !s.includes('\0'), 'a value cannot contain NUL')
    .optional(),
});
export type ColumnSpec = z.infer<typeof columnSpecSchema>;

const RESERVED_COLUMNS: ReadonlySet<string> = new Set([TENANT_CLIENT_COLUMN, TENANT_DATABASE_COLUMN]);

/**
 * A table's declaration (PUT .../tables/{table}). `columns` lists every column in the wire order:
 * `tidemark_version bigint`, then the key columns in key order, then the others. Row data (COPY
 * text) and hashes use exactly this order.
 */
export const tableDeclarationSchema = z
  .object({
    columns: z.array(columnSpecSchema).min(1).max(MAX_COLUMNS),
    keyColumns: z.array(z.string()).min(1).max(MAX_KEY_COLUMNS),
  })
  .superRefine((d, ctx) => {
    const bad = (message: string): void => ctx.addIssue({ code: 'custom', message });
    if (d.columns[0]?.name !== VERSION_COLUMN || d.columns[0].type !== 'bigint') bad(`the first column must be ${VERSION_COLUMN} bigint`);
    d.keyColumns.forEach((k, i) => {
      if (d.columns[i + 1]?.name !== k) bad('key columns must follow the version column, in key order');
    });
    const seen = new Set<string>();
    for (const c of d.columns) {
      if (RESERVED_COLUMNS.has(c.name)) bad(`column name ${c.name} is reserved for the tenant columns`);
      if (seen.has(c.name)) bad(`duplicate column ${c.name}`);
      seen.add(c.name);
    }
  });
export type TableDeclaration = z.infer<typeof tableDeclarationSchema>;

/** State of a forced full resync of one table, as kept by the server. */
export const resyncStateSchema = z.object({
  status: z.enum(['requested', 'running', 'done', 'failed']),
  requestedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** Fraction of the table verified, 0..1. */
  progress: z.number(),
  rowsRepaired: z.number(),
  error: z.string().nullable(),
});
export type ResyncState = z.infer<typeof resyncStateSchema>;

/**
 * The schema state of a tenant's table on the server: `in_sync` (the replica holds this
 * database's declared shape; `changedAt` when it last changed and was applied), or `blocked` (the
 * latest declaration was refused: `reason` says why and what to do; the last accepted shape stays).
 */
export const tableSchemaStateSchema = z.object({
  state: z.enum(['in_sync', 'blocked']),
  reason: z.string().nullable(),
  changedAt: z.string().nullable(),
  appliedAt: z.string().nullable(),
});
export type TableSchemaState = z.infer<typeof tableSchemaStateSchema>;

/** GET/PUT .../tables/{table}: what the server holds, O(1) from its state row. */
export const tableSummarySchema = z.object({
  table: z.string(),
  rowCount: z.number(),
  /**
   * Highest version on the server, or null when it holds no row. Read from row data, which COPY
   * could have filled with any bigint, so any decimal integer is accepted here.
   */
  maxVersion: z
    .string()
    .regex(/^-?\d{1,20}$/)
    .nullable(),
  /** Every committed local row with a version below this is on the server (docs: Safe horizon). */
  settledVersion: versionSchema,
  /** xmax of the snapshot that settled `settledVersion`, or null. */
  settledXmax: versionSchema.nullable(),
  /** In-progress transaction ids of that snapshot. */
  settledXip: z.array(versionSchema),
  /** ISO time: max of the table's modified-time column, or null. */
  maxModified: z.string().nullable(),
  /** When the server last applied a change or settled this table. */
  updatedAt: z.string().nullable(),
  resync: resyncStateSchema.nullable(),
  /** The table's schema state for this database (absent from servers before it). */
  schema: tableSchemaStateSchema.optional(),
});
export type TableSummary = z.infer<typeof tableSummarySchema>;

/** Query parameters of an upload that settle the table after its rows are applied. */
export interface SettleParams {
  settledVersion: string;
  settledXmax: string;
  settledXip: string[];
}

/** POST .../tables/{table} response. */
export const uploadResultSchema = z.object({
  rowsReceived: z.number(),
  rowsInserted: z.number(),
  rowsUpdated: z.number(),
  summary: tableSummarySchema,
});
export type UploadResult = z.infer<typeof uploadResultSchema>;

/** The text form of one key value (no NUL: no PostgreSQL text holds one), at most 64 KiB. */
export const keyValueSchema = z
  .string()
  .refine((s) => !s.includes('\0'), 'a key value cannot contain NUL')
  .refine((s) => Buffer.byteLength(s, 'utf8') <= MAX_KEY_VALUE_BYTES, `a key value is at most ${MAX_KEY_VALUE_BYTES} bytes`);
/** A row's key: its key columns' text forms, in key order. */
export const keyTextSchema = z.array(keyValueSchema).min(1).max(MAX_KEY_COLUMNS);

/** DELETE .../tables/{table}: exactly one of the three forms. */
export const deleteRequestSchema = z.union([
  z.object({ keys: z.array(z.object({ key: keyTextSchema, version: versionSchema })).max(MAX_DELETE_KEYS) }),
  z.object({ aboveVersion: versionSchema }),
  z.object({ all: z.literal(true) }),
]);
export type DeleteRequest = z.infer<typeof deleteRequestSchema>;

export const deleteResultSchema = z.object({ rowsDeleted: z.number(), summary: tableSummarySchema });
export type DeleteResult = z.infer<typeof deleteResultSchema>;

/** PUT .../tables/{table}/resync: the agent reports progress of a requested resync. */
export const resyncReportSchema = z.object({
  status: z.enum(['running', 'done', 'failed']),
  progress: z.number().min(0).max(1),
  rowsRepaired: z.number().int().min(0),
  error: z.string().max(4000).optional(),
});
export type ResyncReport = z.infer<typeof resyncReportSchema>;

/** Error body of every non-2xx answer. */
export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), requestId: z.string(), details: z.unknown().optional() }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

/** Query string of POST .../tables/{table} (an upload): the settle point and flags, all optional. */
export const uploadQuerySchema = z.object({
  settledVersion: versionSchema.optional(),
  settledXmax: versionSchema.optional(),
  /** Comma-separated versions (at most MAX_XIP). */
  settledXip: z
    .string()
    .refine((s) => s === '' || s.split(',').every((v) => versionSchema.safeParse(v).success), 'must be comma-separated decimal versions')
    .refine((s) => s.split(',').length <= MAX_XIP, `must list at most ${MAX_XIP} transaction ids`)
    .optional(),
  maxModified: z.iso.datetime({ offset: true }).optional(),
  insertOnly: z.enum(['true', 'false']).optional(),
});
export type UploadQuery = z.infer<typeof uploadQuerySchema>;
