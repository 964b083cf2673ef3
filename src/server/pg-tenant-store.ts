/**
 * The PostgreSQL TenantStore: one object over the modules that each own their tables and SQL
 * (tenants and keys, the replica catalog and DDL, rows, manifests, table state).
 *
 * Two per-process memories keep an idle run to a statement or two (docs/scaling.md, Idle runs):
 *  - the declarations this process accepted, per tenant and table: the same declaration again is
 *    not declared again (the replica's shape is cached per process anyway); the state row is read,
 *    or settled, by one statement, and a state row that is gone sends it down the full path;
 *  - the leases this process granted: a lease is renewed only once half of it has passed. Safe: no
 *    other agent (or import) can take a lease before it expires, and every grant and release here
 *    goes through this store.
 */
import type { Readable } from 'node:stream';

import type pg from 'pg';

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
import { KeyCache } from './key-cache.js';
import { type ManifestLimits, PgManifests } from './manifests.js';
import { PgTenants } from './pg-tenants.js';
import { type CatalogPolicy, PgReplicaCatalog } from './replica-catalog.js';
import { PgReplicaRows, type UploadOptions } from './replica-rows.js';
import { type AdmittedTable, listAdmitted } from './schema-admission.js';
import { declarationHash } from './schema-evolution.js';
import { listSchemaStates } from './schema-store.js';
import { PgTableState } from './table-state.js';
import type { Tenant } from './tenant-scope.js';
import type { TenantStore } from './tenant-store.js';

/** Entries each memory keeps before it starts over (a bound, not a tuning knob). */
const MEMORY_ENTRIES = 200_000;

export class PgTenantStore implements TenantStore {
  /** `databaseId` -> the agent whose lease this process granted, and when it is due for renewal (ms). */
  private readonly leases = new Map<string, { agentId: string; renewAt: number }>();
  /** `databaseId table` -> hash of the declaration this process accepted. */
  private readonly declared = new Map<string, string>();

  private readonly state = new PgTableState();
  private readonly tenants: PgTenants;
  private readonly catalog: PgReplicaCatalog;
  private readonly rows: PgReplicaRows;
  private readonly manifests: PgManifests;

  constructor(
    private readonly pool: pg.Pool,
    limits: ManifestLimits,
    policy: CatalogPolicy,
    /** The clock of the lease memory (ms). */
    private readonly now: () => number = Date.now,
    /** The API keys this process authenticated lately (shared with the key store, which forgets a database's on each change). */
    keys: KeyCache = new KeyCache(0),
  ) {
    this.tenants = new PgTenants(pool, this.state, keys);
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
  async acquireLease(tenant: Tenant, agentId: string, leaseSeconds: number): Promise<Date | null> {
    const held = this.leases.get(tenant.databaseId);
    // A release (leaseSeconds <= 0: an import giving the lease up) always reaches the database.
    if (held && held.agentId === agentId && leaseSeconds > 0 && this.now() < held.renewAt) return null;
    const started = this.now();
    this.leases.delete(tenant.databaseId);
    const other = await this.tenants.acquireLease(tenant, agentId, leaseSeconds);
    if (other === null && leaseSeconds > 0) {
      if (this.leases.size >= MEMORY_ENTRIES) this.leases.clear();
      // Measured from before the statement: the lease runs from the database's now(), no earlier.
      this.leases.set(tenant.databaseId, { agentId, renewAt: started + (leaseSeconds * 1000) / 2 });
    }
    return other;
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
  async declareTable(tenant: Tenant, table: TableName, declaration: TableDeclaration, idle?: IdleSettle): Promise<DeclareResult> {
    const key = `${tenant.databaseId} ${table.schema}.${table.name}`;
    const hash = declarationHash(declaration);
    // Accepted before by this process: the idle settle alone, one statement, which also checks that
    // the tenant's accepted shape is still this one and in sync (another process, or the admin, may
    // have changed it). Anything else goes through the catalog (one indexed read when unchanged).
    if (idle && this.declared.get(key) === hash) {
      const settled = await this.state.settleIdle(this.pool, tenant, table, idle, hash);
      if (settled) return { ...settled, idleSettled: true };
    }
    const summary = await this.catalog.declare(tenant, table, declaration);
    if (this.declared.size >= MEMORY_ENTRIES) this.declared.clear();
    this.declared.set(key, hash);
    if (!idle) return summary;
    const settled = await this.state.settleIdle(this.pool, tenant, table, idle, hash);
    return settled ? { ...settled, idleSettled: true } : summary;
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
  absentKeys(tenant: Tenant, table: TableName, bucketBits: number, framesJson: string): Promise<{ key: string[]; version: string }[]> {
    return this.manifests.absentKeys(tenant, table, bucketBits, framesJson);
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
