/**
 * What the HTTP app needs from storage: tenants and keys, replica tables, rows, manifests and the
 * per-table state. `PgTenantStore` (pg-tenant-store.ts) implements it over PostgreSQL; a different
 * store (a distributed one, or a recording one in a test) implements the same interface.
 * Every method that touches a tenant's data takes the tenant first.
 */
import type { Readable } from 'node:stream';

import type {
  ColumnSpec,
  DeclareResult,
  DeleteRequest,
  DeleteResult,
  IdleSettle,
  ManifestRequest,
  ManifestResponse,
  RegisterResult,
  ResyncReport,
  TableDeclaration,
  TableName,
  TableSummary,
  TenantInfo,
  UploadResult,
} from '../shared/protocol.js';
import type { UploadOptions } from './replica-rows.js';
import type { AdmittedTable } from './schema-admission.js';
import type { Tenant } from './tenant-scope.js';

export type { UploadOptions } from './replica-rows.js';
export type { Tenant } from './tenant-scope.js';

export interface TenantStore {
  /** Registers a database for a client and returns its API key (shown once; only its hash is kept). */
  registerDatabase(clientId: string, name: string): Promise<RegisterResult>;
  /** The tenant a key belongs to, or null. */
  authenticate(apiKey: string): Promise<Tenant | null>;
  /** Takes or renews the database's single-agent lease: null when granted, else the other lease's expiry. */
  acquireLease(tenant: Tenant, agentId: string, leaseSeconds: number): Promise<Date | null>;
  listTenants(clientId?: string, databaseId?: string): Promise<TenantInfo[]>;
  countTenants(): Promise<number>;

  /**
   * Creates the replica on first sight, or checks the declaration against it (409 on a difference).
   * With `idle`, also settles the table if its state is still the one the agent saw (idleSettled).
   */
  declareTable(tenant: Tenant, table: TableName, declaration: TableDeclaration, idle?: IdleSettle): Promise<DeclareResult>;
  /** The O(1) summary of a declared table (404 when not declared). */
  summary(tenant: Tenant, table: TableName): Promise<TableSummary>;
  /** Applies one batch of COPY text whole or not at all. */
  upload(tenant: Tenant, table: TableName, body: Readable, options: UploadOptions): Promise<UploadResult>;
  deleteRows(tenant: Tenant, table: TableName, request: DeleteRequest): Promise<DeleteResult>;
  /** Recomputes the state row's figures from the rows. */
  recount(tenant: Tenant, table: TableName): Promise<TableSummary>;
  manifest(tenant: Tenant, table: TableName, request: ManifestRequest): Promise<ManifestResponse>;
  /** The rows of the buckets of these key-set frames (a JSON array of them) whose key no frame lists: an offline import's deletion check. */
  absentKeys(tenant: Tenant, table: TableName, bucketBits: number, framesJson: string): Promise<{ key: string[]; version: string }[]>;

  /** Flags tables (all when null) for a forced resync; returns the flagged names. */
  requestResync(clientId: string, databaseId: string, tables: TableName[] | null): Promise<string[]>;
  reportResync(tenant: Tenant, table: TableName, report: ResyncReport): Promise<TableSummary>;

  /** The admin's catalog of admitted tables (schema-admission.ts). */
  listAdmittedTables(): Promise<AdmittedTable[]>;
  /** Admits a table with its key; a different key re-keys the replica. */
  admitTable(table: TableName, key: ColumnSpec[]): Promise<{ rekeyed: number }>;
}
