/**
 * The replica tables a server knows (`tidemark.replica_table`), cached per process: their declared
 * shape, loaded once, and the declaration of a table by a tenant.
 */
import type pg from 'pg';

import { ErrorCode, InvariantError, ProtocolError } from '../shared/errors.js';
import { qualified, withTransaction } from '../shared/pg.js';
import { type ColumnSpec, formatTableName, type TableDeclaration, type TableName, type TableSummary } from '../shared/protocol.js';
import type { RowShape } from '../shared/row-shape.js';
import { checkDeclaration, checkSchemaName, collatableKeys, createReplica, type DeclarationPolicy, diffDeclarations } from './replica-ddl.js';
import type { PgTableState } from './table-state.js';
import type { Tenant } from './tenant-scope.js';

export interface ReplicaTable {
  name: TableName;
  shape: RowShape;
  declaration: TableDeclaration;
}

export class PgReplicaCatalog {
  private readonly replicas = new Map<string, ReplicaTable>();
  private serverRole: string | undefined;

  constructor(
    private readonly pool: pg.Pool,
    private readonly state: PgTableState,
    private readonly policy: DeclarationPolicy,
  ) {}

  private async load(client: pg.ClientBase, table: TableName): Promise<ReplicaTable | null> {
    const key = formatTableName(table);
    const cached = this.replicas.get(key);
    if (cached) return cached;
    const { rows } = await client.query<{ columns: ColumnSpec[]; key_columns: string[] }>(
      /* sql */ `select columns, key_columns from tidemark.replica_table where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const row = rows[0];
    if (!row) return null;
    const replica: ReplicaTable = {
      name: table,
      declaration: { columns: row.columns, keyColumns: row.key_columns },
      shape: {
        table: qualified(table.schema, table.name),
        columns: row.columns,
        keyColumns: row.key_columns,
        collatableKeys: await collatableKeys(client, table, row.key_columns),
      },
    };
    this.replicas.set(key, replica);
    return replica;
  }

  /** The replica of a table the tenant has declared; 404 otherwise. */
  async require(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<ReplicaTable> {
    const replica = await this.load(client, table);
    if (!replica || !(await this.state.exists(client, tenant, table)))
      throw new ProtocolError(ErrorCode.REPLICA_TABLE_UNKNOWN, 404, `table ${formatTableName(table)} is not declared for this database`);
    return replica;
  }

  /**
   * Declares a table for a tenant: creates the replica on first sight (same schema and name as
   * local), or checks that the agent's schema matches it (409 naming the differing columns).
   * Returns the summary.
   */
  async declare(tenant: Tenant, table: TableName, declaration: TableDeclaration): Promise<TableSummary> {
    checkDeclaration(declaration);
    const { maxTables, maxColumns } = this.policy;
    if (declaration.columns.length > maxColumns)
      throw new ProtocolError(
        ErrorCode.REQUEST_INVALID,
        403,
        `quota tenantMaxColumns: a table may have at most ${maxColumns} columns; this one declares ${declaration.columns.length}`,
      );
    return withTransaction(this.pool, async (client) => {
      this.serverRole ??= (await client.query<{ role: string }>(/* sql */ `select current_user as role`)).rows[0]?.role ?? '';
      checkSchemaName(table, this.serverRole);
      if (!(await this.state.exists(client, tenant, table)) && (await this.state.countDeclaredLocked(client, tenant)) >= maxTables)
        throw new ProtocolError(ErrorCode.REQUEST_INVALID, 403, `quota tenantMaxTables: this database may declare at most ${maxTables} tables`);
      // Serialise declarations of one table name; concurrent creations would otherwise race.
      await client.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.declare'), hashtext($1::text))`, [formatTableName(table)]);
      let replica = await this.load(client, table);
      if (!replica) {
        await createReplica(client, table, declaration, this.policy);
        this.replicas.delete(formatTableName(table));
        replica = await this.load(client, table);
        if (!replica) throw new InvariantError(`replica table ${formatTableName(table)} vanished after creation`);
      }
      const diffs = diffDeclarations(replica.declaration, declaration);
      if (diffs.length)
        throw new ProtocolError(ErrorCode.REPLICA_SCHEMA_MISMATCH, 409, `schema of ${formatTableName(table)} differs from the replica: ${diffs.join('; ')}`);
      return this.state.ensure(client, tenant, table);
    });
  }
}
