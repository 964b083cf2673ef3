/**
 * The PostgreSQL TenantStore: one object over the modules that each own their tables and SQL
 * (tenants and keys, the replica catalog and DDL, rows, manifests, table state).
 */
import type { Readable } from 'node:stream';

import type pg from 'pg';

import type {
  ColumnSpec,
  DeleteRequest,
  DeleteResult,
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
import { type ManifestLimits, PgManifests } from './manifests.js';
import { PgTenants } from './pg-tenants.js';
import { type CatalogPolicy, PgReplicaCatalog } from './replica-catalog.js';
import { PgReplicaRows, type UploadOptions } from './replica-rows.js';
import { type AdmittedTable, listAdmitted } from './schema-admission.js';
import { listSchemaStates } from './schema-store.js';
import { PgTableState } from './table-state.js';
import type { Tenant } from './tenant-scope.js';
import type { TenantStore } from './tenant-store.js';

export class PgTenantStore implements TenantStore {
  private readonly state = new PgTableState();
  private readonly tenants: PgTenants;
  private readonly catalog: PgReplicaCatalog;
  private readonly rows: PgReplicaRows;
  private readonly manifests: PgManifests;

  constructor(
    private readonly pool: pg.Pool,
    limits: ManifestLimits,
    policy: CatalogPolicy,
  ) {
    this.tenants = new PgTenants(pool, this.state);
    this.catalog = new PgReplicaCatalog(pool, this.state, policy);
    this.rows = new PgReplicaRows(pool, this.catalog, this.state);
    this.manifests = new PgManifests(pool, this.catalog, limits);
  }

  registerDatabase(clientId: string, name: string): Promise<RegisterResult> {
    return this.tenants.registerDatabase(clientId, name);
  }
  authenticate(apiKey: string): Promise<Tenant | null> {
    return this.tenants.authenticate(apiKey);
  }
  acquireLease(tenant: Tenant, agentId: string, leaseSeconds: number): Promise<Date | null> {
    return this.tenants.acquireLease(tenant, agentId, leaseSeconds);
  }
  async listTenants(clientId?: string, databaseId?: string): Promise<TenantInfo[]> {
    const [tenants, states] = await Promise.all([this.tenants.listTenants(clientId, databaseId), listSchemaStates(this.pool, clientId, databaseId)]);
    // Each table's schema state (in sync, changed and applied at T, blocked with why).
    return tenants.map((t) => ({
      ...t,
      tables: t.tables.map((s) => {
        const schema = states.get(`${t.clientId}/${t.databaseId}/${s.table}`);
        return schema ? { ...s, schema } : s;
      }),
    }));
  }
  countTenants(): Promise<number> {
    return this.tenants.countTenants();
  }
  declareTable(tenant: Tenant, table: TableName, declaration: TableDeclaration): Promise<TableSummary> {
    return this.catalog.declare(tenant, table, declaration);
  }
  summary(tenant: Tenant, table: TableName): Promise<TableSummary> {
    return this.catalog.summary(tenant, table);
  }
  upload(tenant: Tenant, table: TableName, body: Readable, options: UploadOptions): Promise<UploadResult> {
    return this.rows.upload(tenant, table, body, options);
  }
  deleteRows(tenant: Tenant, table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return this.rows.deleteRows(tenant, table, request);
  }
  recount(tenant: Tenant, table: TableName): Promise<TableSummary> {
    return this.rows.recount(tenant, table);
  }
  manifest(tenant: Tenant, table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return this.manifests.manifest(tenant, table, request);
  }
  requestResync(clientId: string, databaseId: string, tables: TableName[] | null): Promise<string[]> {
    return this.state.requestResync(this.pool, clientId, databaseId, tables);
  }
  reportResync(tenant: Tenant, table: TableName, report: ResyncReport): Promise<TableSummary> {
    return this.state.reportResync(this.pool, tenant, table, report);
  }

  listAdmittedTables(): Promise<AdmittedTable[]> {
    return listAdmitted(this.pool);
  }
  admitTable(table: TableName, key: ColumnSpec[]): Promise<{ rekeyed: number }> {
    return this.catalog.admitTable(table, key);
  }

  /** Pool figures for the metrics. */
  poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }
}
