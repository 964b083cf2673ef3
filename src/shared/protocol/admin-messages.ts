/** The messages of the admin routes (README, Wire protocol), as zod schemas with inferred types. */
import { z } from 'zod';

import { bundleStatusSchema } from './bundle.js';
import { clientIdSchema, databaseIdSchema } from './identifiers.js';
import { MAX_KEY_COLUMNS, MAX_RESYNC_TABLES } from './limits.js';
import { collationSchema, columnTypeSchema, tableSummarySchema } from './table-messages.js';
import { columnNameSchema } from './table-name.js';

/** POST /v1/admin/customers/{clientId}/databases: register. */
export const registerRequestSchema = z.object({ name: z.string().min(1).max(200) });
export type RegisterRequest = z.infer<typeof registerRequestSchema>;

export const registerResultSchema = z.object({
  clientId: clientIdSchema,
  databaseId: databaseIdSchema,
  /** Shown once; the server keeps only its hash. */
  apiKey: z.string().min(1),
});
export type RegisterResult = z.infer<typeof registerResultSchema>;

/** POST /v1/admin/customers/{clientId}/databases/{databaseId}/resync */
export const resyncRequestSchema = z.object({
  /** Tables to resync (text forms); all declared tables when absent. */
  tables: z.array(z.string()).max(MAX_RESYNC_TABLES).optional(),
});
export type ResyncRequest = z.infer<typeof resyncRequestSchema>;

/** 202 answer of a resync request: the tables flagged. */
export const resyncResultSchema = z.object({ tables: z.array(z.string()) });
export type ResyncResult = z.infer<typeof resyncResultSchema>;

export const tenantTableInfoSchema = tableSummarySchema.extend({
  /** Seconds since the server last applied a change or settled the table. */
  secondsSinceUpdate: z.number().nullable(),
});
export type TenantTableInfo = z.infer<typeof tenantTableInfoSchema>;

/** GET /v1/admin/customers/{clientId}/databases/{databaseId} */
export const tenantInfoSchema = z.object({
  clientId: z.string(),
  databaseId: z.string(),
  name: z.string(),
  createdAt: z.string(),
  tables: z.array(tenantTableInfoSchema),
  /** An offline database's last bundle imported and the cloud copy's age (GET of one database only; absent for online-only ones). */
  bundle: bundleStatusSchema.optional(),
});
export type TenantInfo = z.infer<typeof tenantInfoSchema>;

/** GET /v1/admin/tenants */
export const tenantListSchema = z.object({ tenants: z.array(tenantInfoSchema) });
export type TenantList = z.infer<typeof tenantListSchema>;

/** PUT /v1/admin/tables/{table}: admit a table with its key columns (name, type as format_type prints it, collation). */
export const admitTableRequestSchema = z.object({
  keyColumns: z
    .array(z.object({ name: columnNameSchema, type: columnTypeSchema, collation: collationSchema.optional() }))
    .min(1)
    .max(MAX_KEY_COLUMNS),
});
export type AdmitTableRequest = z.infer<typeof admitTableRequestSchema>;

/** GET /v1/admin/tables: the admitted tables. */
export const admittedTableSchema = z.object({
  table: z.string(),
  keyColumns: z.array(z.object({ name: z.string(), type: z.string(), notNull: z.boolean(), collation: collationSchema.optional() })),
  /** Admitted by a first declaration (replicaAdmission auto), not confirmed by the admin. */
  provisional: z.boolean(),
  admittedAt: z.string(),
  tenants: z.number(),
  blocked: z.number(),
});
export const admittedTableListSchema = z.object({ tables: z.array(admittedTableSchema) });
export type AdmittedTableList = z.infer<typeof admittedTableListSchema>;
