/**
 * The shared replica catalog (docs/design.md, The shared replica catalog): one replica table per
 * `schema.table`, the governed union of its tenants' declared shapes. A tenant's requests use its
 * own shape (its columns for COPY, its types for hashes); a declaration evolves the union (add
 * column, widen a type, drop a column no one declares), or is refused for that tenant alone.
 */
import type pg from 'pg';

import { ErrorCode, ProtocolError, TidemarkError } from '../shared/errors.js';
import { ident, qualified, type SqlIdent, sqlType, withTransaction } from '../shared/pg.js';
import {
  type ColumnSpec,
  formatTableName,
  type TableDeclaration,
  type TableName,
  type TableSchemaState,
  type TableSummary,
  TENANT_CLIENT_COLUMN,
  TENANT_DATABASE_COLUMN,
} from '../shared/protocol.js';
import type { RowShape } from '../shared/row-shape.js';
import { checkColumnTypes } from './column-types.js';
import { checkCollation, checkDeclaration, checkSchemaName, collatableKeys, createReplica, type DeclarationPolicy, refusedByDatabase } from './replica-ddl.js';
import { admitTable } from './schema-admission.js';
import { declarationHash, keyColumnsOf, keyRefusal, planEvolution, storedDeclaration } from './schema-evolution.js';
import {
  type AdmissionMode,
  admit,
  alterReplica,
  applyRowChanges,
  type DroppedColumnsPolicy,
  markBlocked,
  planClauses,
  readAdmission,
  readShapeAndUnion,
  readTenantShape,
  saveTenantShape,
  saveUnion,
  schemaStateJsonSql,
  undeclaredElsewhere,
} from './schema-store.js';
import type { PgTableState } from './table-state.js';
import type { Tenant } from './tenant-scope.js';

/** A tenant's view of a replica table. */
export interface ReplicaTable {
  name: TableName;
  /** The tenant's own columns on the replica table: what its uploads and deletes use. */
  shape: RowShape;
  /**
   * The same, read through the tenant's own types: a column the union widened is cast back to the
   * type this tenant declares, so its rows hash as they do locally (manifests).
   */
  hashShape: RowShape;
  declaration: TableDeclaration;
  /** The tenant's columns with the replica's types (the union may have widened them): what a staging table of its rows holds. */
  stageColumns: ColumnSpec[];
}

/** Governance of the shared catalog (server config `replicaAdmission`, `replicaDroppedColumns`). */
export interface CatalogPolicy extends DeclarationPolicy {
  admission: AdmissionMode;
  droppedColumns: DroppedColumnsPolicy;
}

/** A refusal of one tenant's declaration: that table is blocked for that tenant only. */
class SchemaRefusal extends ProtocolError {
  constructor(
    table: TableName,
    readonly reason: string,
  ) {
    super(ErrorCode.REPLICA_SCHEMA_MISMATCH, 409, `${formatTableName(table)} does not sync from this database: ${reason}`);
  }
}

/**
 * The one answer for a table this tenant may not declare, whether the admin has not admitted it
 * or its name is taken on the server by something else: the same code, status and words, so a
 * tenant cannot probe what the cloud database holds (docs/security.md).
 */
export function notAdmitted(table: TableName): ProtocolError {
  const label = formatTableName(table);
  return new ProtocolError(
    ErrorCode.REPLICA_NOT_ADMITTED,
    403,
    `table ${label} is not admitted for replication on this server; ask the server's admin to admit it (tidemark admit-table ${label} --key "<column> <type>")`,
  );
}

interface SchemaJson extends TableSchemaState {
  hash: string;
}

function withSchema(summary: TableSummary, extra: SchemaJson | null): TableSummary {
  if (!extra) return summary;
  const { hash: _, ...schema } = extra;
  return { ...summary, schema };
}

export class PgReplicaCatalog {
  /** Key columns with a collation, per table and key (a key never changes type without a re-key). */
  private readonly collatable = new Map<string, Set<string>>();
  private serverRole: string | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly state: PgTableState,
    private readonly policy: CatalogPolicy,
  ) {}

  /** The tenant's view of a table it has declared; 404 otherwise. One indexed read. */
  async require(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<ReplicaTable> {
    const found = await readShapeAndUnion(client, tenant, table);
    if (!found) throw new ProtocolError(ErrorCode.REPLICA_TABLE_UNKNOWN, 404, `table ${formatTableName(table)} is not declared for this database`);
    const { own, union } = found;
    const cacheKey = `${formatTableName(table)}\0${own.keyColumns.join('\0')}`;
    let keys = this.collatable.get(cacheKey);
    if (!keys) {
      keys = await collatableKeys(client, table, own.keyColumns);
      this.collatable.set(cacheKey, keys);
    }
    const shape: RowShape = { table: qualified(table.schema, table.name), columns: own.columns, keyColumns: own.keyColumns, collatableKeys: keys };
    const stageColumns = own.columns.map((c) => union.find((u) => u.name === c.name) ?? c);
    return { name: table, shape, hashShape: { ...shape, table: castView(table, own.columns, union) }, declaration: own, stageColumns };
  }

  /** Admits a table with its key (admin); re-keys its replica when the key differs (schema-admission.ts). */
  async admitTable(table: TableName, key: ColumnSpec[]): Promise<{ rekeyed: number }> {
    const result = await admitTable(this.pool, table, key, (client, columns) => checkColumnTypes(client, columns, this.policy.admittedTypes));
    this.collatable.clear();
    return result;
  }

  /** The summary of a declared table with its schema state (404 when not declared). */
  async summary(tenant: Tenant, table: TableName): Promise<TableSummary> {
    const found = await this.state.readWith<SchemaJson>(this.pool, tenant, table, schemaStateSql);
    if (!found) return this.state.read(this.pool, tenant, table);
    return withSchema(found.summary, found.extra);
  }

  /**
   * Declares a table for a tenant. Unchanged since the last accepted declaration: one indexed read,
   * no lock. Otherwise, under a lock on the table name: admission (the admitted key), then the
   * replica is created, or evolved to hold this tenant's shape too, or the declaration is refused
   * for this tenant alone (409, its table marked blocked).
   */
  async declare(tenant: Tenant, table: TableName, declaration: TableDeclaration): Promise<TableSummary> {
    checkDeclaration(declaration);
    const { maxColumns } = this.policy;
    if (declaration.columns.length > maxColumns)
      throw new ProtocolError(
        ErrorCode.REQUEST_INVALID,
        403,
        `quota tenantMaxColumns: a table may have at most ${maxColumns} columns; this one declares ${declaration.columns.length}`,
      );
    const hash = declarationHash(declaration);
    const fast = await this.state.readWith<SchemaJson>(this.pool, tenant, table, schemaStateSql);
    if (fast?.extra && fast.extra.hash === hash && fast.extra.state === 'in_sync') return withSchema(fast.summary, fast.extra);
    try {
      await withTransaction(this.pool, (client) => this.evolve(client, tenant, table, declaration, hash));
    } catch (e) {
      if (e instanceof SchemaRefusal) await markBlocked(this.pool, tenant, table, e.reason);
      throw e;
    }
    return this.summary(tenant, table);
  }

  private async evolve(client: pg.ClientBase, tenant: Tenant, table: TableName, declaration: TableDeclaration, hash: string): Promise<void> {
    const { maxTables } = this.policy;
    this.serverRole ??= (await client.query<{ role: string }>(/* sql */ `select current_user as role`)).rows[0]?.role ?? '';
    checkSchemaName(table, this.serverRole);
    if (!(await this.state.exists(client, tenant, table)) && (await this.state.countDeclaredLocked(client, tenant)) >= maxTables)
      throw new ProtocolError(ErrorCode.REQUEST_INVALID, 403, `quota tenantMaxTables: this database may declare at most ${maxTables} tables`);
    // Serialise declarations of one table name: the union is read, evolved and written by one at a time.
    await client.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.declare'), hashtext($1::text))`, [formatTableName(table)]);
    const previous = await readTenantShape(client, tenant, table);
    const stored = storedDeclaration(declaration);
    const admission = await readAdmission(client, table);
    if (!admission) {
      if (this.policy.admission === 'manual') throw notAdmitted(table);
      await admit(client, table, keyColumnsOf(declaration), true);
    } else {
      const refused = keyRefusal(table, declaration, admission.key, previous?.declaration ?? null);
      if (refused) throw new SchemaRefusal(table, refused);
    }
    const { rows } = await client.query<{ columns: ColumnSpec[] }>(
      /* sql */ `select columns from tidemark.replica_table where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const union = rows[0]?.columns;
    if (!union) {
      await createReplica(client, table, stored, this.policy, () => notAdmitted(table));
    } else {
      const plan = planEvolution(declaration, union, previous?.declaration ?? null);
      if ('refusals' in plan) throw new SchemaRefusal(table, plan.refusals.join('; '));
      // Types and collations this tenant did not declare before are resolved against the allow-list.
      const before = new Map((previous?.declaration.columns ?? []).map((c) => [c.name, c.type]));
      await checkColumnTypes(
        client,
        stored.columns.filter((c) => before.get(c.name) !== c.type),
        this.policy.admittedTypes,
      );
      for (const c of plan.addColumns) if (c.collation) await checkCollation(client, c.name, c.collation);
      const drops = this.policy.droppedColumns === 'drop' ? await undeclaredElsewhere(client, tenant, table, plan.nullColumns) : [];
      try {
        await alterReplica(client, table, planClauses(plan, drops));
      } catch (e) {
        throw e instanceof TidemarkError ? e : refusedByDatabase(e);
      }
      await applyRowChanges(client, tenant, table, plan, new Set(drops));
      const next = plan.union.filter((c) => !drops.includes(c.name));
      if (JSON.stringify(next) !== JSON.stringify(union)) await saveUnion(client, table, next);
    }
    const changed = previous !== null && JSON.stringify(previous.declaration) !== JSON.stringify(stored);
    await saveTenantShape(client, tenant, table, stored, hash, changed);
    await this.state.ensure(client, tenant, table);
  }
}

/** The tenant's schema state and declaration hash, as a scalar subquery over the state key. */
const schemaStateSql = schemaStateJsonSql.replace('jsonb_build_object(', `jsonb_build_object('hash', declaration_hash, `);

/**
 * The replica read through a tenant's own types: `(select tenant columns, "c"::its_type as "c", …
 * from the replica) as "table"`. A plain projection: PostgreSQL pulls it up, so range conditions on
 * the version and key (never cast: keys are the admitted ones) still use the version index.
 */
function castView(table: TableName, own: readonly ColumnSpec[], union: readonly ColumnSpec[]): SqlIdent {
  const unionTypes = new Map(union.map((c) => [c.name, c.type]));
  const casts = own.filter((c) => unionTypes.get(c.name) !== c.type);
  const real = qualified(table.schema, table.name);
  if (casts.length === 0) return real;
  const castNames = new Set(casts.map((c) => c.name));
  const cols = own.map((c) => (castNames.has(c.name) ? `${ident(c.name)}::${sqlType(c.type)} as ${ident(c.name)}` : ident(c.name)));
  return `(select ${ident(TENANT_CLIENT_COLUMN)}, ${ident(TENANT_DATABASE_COLUMN)}, ${cols.join(', ')} from ${real}) as ${ident(table.name)}` as SqlIdent;
}
