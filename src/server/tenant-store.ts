/**
 * The server's only access to PostgreSQL: tenants and keys, replica tables (created from the schema
 * agents declare), row uploads (COPY into a staging table, then one upsert), deletes, manifests and
 * the per-(tenant, table) state rows. Every function that touches rows takes the tenant first, and
 * every statement on a replica table filters on both tenant columns; row-level security is the
 * second wall.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type pg from 'pg';
import copyStreams from 'pg-copy-streams';

import { ErrorCode, ProtocolError, TidemarkError } from '../shared/errors.js';
import { ident, isSafeTypeName, PINNED_SETTINGS_SQL, qualified, withTransaction } from '../shared/pg.js';
import {
  type ColumnSpec,
  type DeleteRequest,
  type DeleteResult,
  formatTableName,
  type ManifestRequest,
  type ManifestResponse,
  type RegisterResult,
  type ResyncReport,
  type ResyncState,
  type SettleParams,
  type TableDeclaration,
  type TableName,
  type TableSummary,
  TENANT_CLIENT_COLUMN,
  TENANT_DATABASE_COLUMN,
  type TenantInfo,
  type UploadResult,
  VERSION_COLUMN,
} from '../shared/protocol.js';
import { columnListSql, manifestQuery, manifestResponse, orderSql, type RowShape } from '../shared/row-shape.js';

export interface Tenant {
  clientId: string;
  databaseId: string;
}

interface ReplicaTable {
  name: TableName;
  shape: RowShape;
  declaration: TableDeclaration;
}

export function hashApiKey(apiKey: string): Buffer {
  return createHash('sha256').update(apiKey).digest();
}

export function generateApiKey(): string {
  return `tmk_${randomBytes(32).toString('base64url')}`;
}

/**
 * Errors caused by the rows themselves: 22xxx data exceptions (bad COPY text, bad values), 23xxx
 * integrity (check, not null, unique), 21000 duplicate keys in one batch, 54000 program limit
 * exceeded (e.g. an index row too large).
 */
function isDataRejection(sqlstate: string | undefined): boolean {
  return sqlstate !== undefined && (sqlstate.startsWith('22') || sqlstate.startsWith('23') || sqlstate === '21000' || sqlstate === '54000');
}

function sqlstateOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

const STATE_COLUMNS = /* sql */ `
  row_count::text, max_version::text, settled_version::text, settled_xmax::text, settled_xip::text[] as settled_xip,
  max_modified, updated_at, resync_status, resync_requested_at, resync_started_at, resync_finished_at,
  resync_progress, resync_rows_repaired::text, resync_error`;

interface StateRow {
  row_count: string;
  max_version: string | null;
  settled_version: string;
  settled_xmax: string | null;
  settled_xip: string[];
  max_modified: Date | null;
  updated_at: Date | null;
  resync_status: string | null;
  resync_requested_at: Date | null;
  resync_started_at: Date | null;
  resync_finished_at: Date | null;
  resync_progress: number;
  resync_rows_repaired: string;
  resync_error: string | null;
}

function toSummary(table: TableName, r: StateRow): TableSummary {
  const resync: ResyncState | null =
    r.resync_status && r.resync_requested_at
      ? {
          status: r.resync_status as ResyncState['status'],
          requestedAt: r.resync_requested_at.toISOString(),
          startedAt: r.resync_started_at?.toISOString() ?? null,
          finishedAt: r.resync_finished_at?.toISOString() ?? null,
          progress: r.resync_progress,
          rowsRepaired: Number(r.resync_rows_repaired),
          error: r.resync_error,
        }
      : null;
  return {
    table: formatTableName(table),
    rowCount: Number(r.row_count),
    maxVersion: r.max_version,
    settledVersion: r.settled_version,
    settledXmax: r.settled_xmax,
    settledXip: r.settled_xip,
    maxModified: r.max_modified?.toISOString() ?? null,
    updatedAt: r.updated_at?.toISOString() ?? null,
    resync,
  };
}

const MAX_KEY_COLUMNS = 32;
const RESERVED = new Set([TENANT_CLIENT_COLUMN, TENANT_DATABASE_COLUMN]);

/** Validates a declaration's form; types are further resolved by the database. */
function checkDeclaration(d: TableDeclaration): void {
  const bad = (message: string): never => {
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid table declaration: ${message}`);
  };
  if (d.columns.length === 0 || d.columns[0]?.name !== VERSION_COLUMN || d.columns[0].type !== 'bigint')
    bad(`the first column must be ${VERSION_COLUMN} bigint`);
  if (d.keyColumns.length === 0 || d.keyColumns.length > MAX_KEY_COLUMNS) bad('keyColumns must list 1 to 32 columns');
  d.keyColumns.forEach((k, i) => {
    if (d.columns[i + 1]?.name !== k) bad('key columns must follow the version column, in key order');
  });
  const seen = new Set<string>();
  for (const c of d.columns) {
    if (c.name.length === 0 || Buffer.byteLength(c.name) > 63) bad(`column name ${JSON.stringify(c.name)} is empty or longer than 63 bytes`);
    if (RESERVED.has(c.name)) bad(`column name ${c.name} is reserved for the tenant columns`);
    if (seen.has(c.name)) bad(`duplicate column ${c.name}`);
    seen.add(c.name);
    if (!isSafeTypeName(c.type))
      throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `column ${c.name} has an unsupported type ${JSON.stringify(c.type)}`);
  }
}

/** Names the columns that differ between a declaration and the replica's. */
function diffDeclarations(have: TableDeclaration, want: TableDeclaration): string[] {
  const diffs: string[] = [];
  const haveCols = new Map(have.columns.map((c) => [c.name, c]));
  const wantCols = new Map(want.columns.map((c) => [c.name, c]));
  for (const c of want.columns) {
    const h = haveCols.get(c.name);
    if (!h) diffs.push(`${c.name} (missing on the replica)`);
    else if (h.type !== c.type) diffs.push(`${c.name} (replica ${h.type}, agent ${c.type})`);
  }
  for (const c of have.columns) if (!wantCols.has(c.name)) diffs.push(`${c.name} (missing locally)`);
  if (diffs.length === 0 && have.keyColumns.join(',') !== want.keyColumns.join(','))
    diffs.push(`key (replica ${have.keyColumns.join(', ')}, agent ${want.keyColumns.join(', ')})`);
  if (diffs.length === 0 && have.columns.map((c) => c.name).join(',') !== want.columns.map((c) => c.name).join(',')) diffs.push('column order');
  return diffs;
}

export class PgTenantStore {
  private readonly replicas = new Map<string, ReplicaTable>();

  constructor(private readonly pool: pg.Pool) {}

  // --- tenants and keys ----------------------------------------------------------------------

  async registerDatabase(clientId: string, name: string): Promise<RegisterResult> {
    const databaseId = randomUUID();
    const apiKey = generateApiKey();
    await this.pool.query(
      /* sql */ `insert into tidemark.tenant_database (client_id, database_id, name, api_key_hash) values ($1::text, $2::uuid, $3::text, $4::bytea)`,
      [clientId, databaseId, name, hashApiKey(apiKey)],
    );
    return { clientId, databaseId, apiKey };
  }

  /** The tenant a key belongs to, or null. The stored hash is compared in constant time. */
  async authenticate(apiKey: string): Promise<Tenant | null> {
    const hash = hashApiKey(apiKey);
    const { rows } = await this.pool.query<{ client_id: string; database_id: string; api_key_hash: Buffer }>(
      /* sql */ `select client_id, database_id::text, api_key_hash from tidemark.tenant_database where api_key_hash = $1::bytea`,
      [hash],
    );
    const row = rows[0];
    if (!row || !timingSafeEqual(row.api_key_hash, hash)) return null;
    return { clientId: row.client_id, databaseId: row.database_id };
  }

  /**
   * Takes or renews the database's lease for `agentId`. Returns null when granted, or the expiry of
   * the other agent's lease. One statement: the row lock makes concurrent claims take turns.
   */
  async acquireLease(tenant: Tenant, agentId: string, leaseSeconds: number): Promise<Date | null> {
    const { rows } = await this.pool.query<{ granted: boolean; lease_expires_at: Date }>(
      /* sql */ `
      with claim as (
        update tidemark.tenant_database
           set lease_agent_id = $3::text, lease_expires_at = now() + make_interval(secs => $4::double precision)
         where client_id = $1::text and database_id = $2::uuid
           and (lease_agent_id is null or lease_agent_id = $3::text or lease_expires_at < now())
        returning true as granted, lease_expires_at)
      select granted, lease_expires_at from claim
      union all
      select false, lease_expires_at from tidemark.tenant_database
       where client_id = $1::text and database_id = $2::uuid and not exists (select from claim)`,
      [tenant.clientId, tenant.databaseId, agentId, leaseSeconds],
    );
    const row = rows[0];
    if (!row) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'database not registered');
    return row.granted ? null : row.lease_expires_at;
  }

  async listTenants(clientId?: string, databaseId?: string): Promise<TenantInfo[]> {
    const { rows } = await this.pool.query<{ client_id: string; database_id: string; name: string; created_at: Date }>(
      /* sql */ `
      select client_id, database_id::text, name, created_at from tidemark.tenant_database
       where ($1::text is null or client_id = $1::text) and ($2::uuid is null or database_id = $2::uuid)
       order by client_id, created_at`,
      [clientId ?? null, databaseId ?? null],
    );
    const states = await this.pool.query<StateRow & { client_id: string; database_id: string; schema_name: string; table_name: string }>(
      /* sql */ `
      select client_id, database_id::text, schema_name, table_name, ${STATE_COLUMNS} from tidemark.table_state
       where ($1::text is null or client_id = $1::text) and ($2::uuid is null or database_id = $2::uuid)
       order by schema_name, table_name`,
      [clientId ?? null, databaseId ?? null],
    );
    const now = Date.now();
    return rows.map((r) => ({
      clientId: r.client_id,
      databaseId: r.database_id,
      name: r.name,
      createdAt: r.created_at.toISOString(),
      tables: states.rows
        .filter((s) => s.client_id === r.client_id && s.database_id === r.database_id)
        .map((s) => ({
          ...toSummary({ schema: s.schema_name, name: s.table_name }, s),
          secondsSinceUpdate: s.updated_at ? Math.max(0, (now - s.updated_at.getTime()) / 1000) : null,
        })),
    }));
  }

  async countTenants(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(/* sql */ `select count(*)::text as n from tidemark.tenant_database`);
    return Number(rows[0]?.n ?? 0);
  }

  // --- replica tables ------------------------------------------------------------------------

  private async loadReplica(client: pg.ClientBase, table: TableName): Promise<ReplicaTable | null> {
    const key = formatTableName(table);
    const cached = this.replicas.get(key);
    if (cached) return cached;
    const { rows } = await client.query<{ columns: ColumnSpec[]; key_columns: string[] }>(
      /* sql */ `select columns, key_columns from tidemark.replica_table where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const row = rows[0];
    if (!row) return null;
    const declaration: TableDeclaration = { columns: row.columns, keyColumns: row.key_columns };
    // Collatable key columns are compared in byte order (COLLATE "C") on both sides.
    const coll = await client.query<{ attname: string }>(
      /* sql */ `
      select a.attname from pg_attribute a
       where a.attrelid = to_regclass($1::text) and a.attname = any($2::text[]) and a.attcollation <> 0`,
      [qualified(table.schema, table.name), row.key_columns],
    );
    const replica: ReplicaTable = {
      name: table,
      declaration,
      shape: {
        table: qualified(table.schema, table.name),
        columns: row.columns,
        keyColumns: row.key_columns,
        collatableKeys: new Set(coll.rows.map((r) => r.attname)),
      },
    };
    this.replicas.set(key, replica);
    return replica;
  }

  private async requireReplica(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<ReplicaTable> {
    const replica = await this.loadReplica(client, table);
    const known =
      replica &&
      (
        await client.query(
          /* sql */ `select from tidemark.table_state where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`,
          [tenant.clientId, tenant.databaseId, table.schema, table.name],
        )
      ).rowCount === 1;
    if (!replica || !known) throw new ProtocolError(ErrorCode.REPLICA_TABLE_UNKNOWN, 404, `table ${formatTableName(table)} is not declared for this database`);
    return replica;
  }

  /**
   * Declares a table for a tenant: creates the replica on first sight (same schema and name as
   * local, tenant columns leading the key and every index, row-level security by tenant), or checks
   * that the agent's schema matches it (409 naming the differing columns). Returns the summary.
   */
  async declareTable(tenant: Tenant, table: TableName, declaration: TableDeclaration): Promise<TableSummary> {
    checkDeclaration(declaration);
    if (table.schema === 'tidemark' || table.schema.startsWith('pg_') || table.schema === 'information_schema')
      throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `schema ${table.schema} is reserved`);
    return withTransaction(this.pool, async (client) => {
      // Serialise declarations of one table name; concurrent creations would otherwise race.
      await client.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.declare'), hashtext($1::text))`, [formatTableName(table)]);
      let replica = await this.loadReplica(client, table);
      if (!replica) {
        await this.createReplica(client, table, declaration);
        this.replicas.delete(formatTableName(table));
        replica = await this.loadReplica(client, table);
        if (!replica) throw new TidemarkError(ErrorCode.INTERNAL, 'replica table vanished after creation');
      }
      const diffs = diffDeclarations(replica.declaration, declaration);
      if (diffs.length)
        throw new ProtocolError(ErrorCode.REPLICA_SCHEMA_MISMATCH, 409, `schema of ${formatTableName(table)} differs from the replica: ${diffs.join('; ')}`);
      const { rows } = await client.query<StateRow>(
        /* sql */ `
        with ins as (
          insert into tidemark.table_state (client_id, database_id, schema_name, table_name)
          values ($1::text, $2::uuid, $3::text, $4::text)
          on conflict do nothing
          returning ${STATE_COLUMNS})
        select * from ins
        union all
        select ${STATE_COLUMNS} from tidemark.table_state
         where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`,
        [tenant.clientId, tenant.databaseId, table.schema, table.name],
      );
      return toSummary(table, rows[0] as StateRow);
    });
  }

  private async createReplica(client: pg.ClientBase, table: TableName, d: TableDeclaration): Promise<void> {
    for (const c of d.columns) {
      const { rows } = await client.query<{ ok: boolean }>(/* sql */ `select to_regtype($1::text) is not null as ok`, [c.type]);
      if (!rows[0]?.ok)
        throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `column ${c.name} has type ${c.type}, which the server database does not know`);
    }
    const t = qualified(table.schema, table.name);
    const exists = await client.query(/* sql */ `select to_regclass($1::text) is not null as ok`, [t]);
    if ((exists.rows[0] as { ok: boolean }).ok)
      throw new ProtocolError(
        ErrorCode.REPLICA_SCHEMA_MISMATCH,
        409,
        `a table ${formatTableName(table)} already exists on the server but was not created by tidemark`,
      );
    // Types passed isSafeTypeName (a whitelist without quotes or punctuation) and to_regtype above.
    const columnDefs = d.columns.map((c) => `${ident(c.name)} ${c.type}${c.notNull || d.keyColumns.includes(c.name) ? ' not null' : ''}`);
    const tenantKey = [ident(TENANT_CLIENT_COLUMN), ident(TENANT_DATABASE_COLUMN)];
    const base = table.name.slice(0, 40);
    const pkName = ident(`${base}_tidemark_pkey`);
    const versionIndex = ident(`${base}_tidemark_version_idx`);
    const tenantQual = `${ident(TENANT_CLIENT_COLUMN)} = current_setting('tidemark.client_id', true) and ${ident(TENANT_DATABASE_COLUMN)} = nullif(current_setting('tidemark.database_id', true), '')::uuid`;
    await client.query(/* sql */ `create schema if not exists ${ident(table.schema)}`);
    await client.query(/* sql */ `
      create table ${t} (
        ${ident(TENANT_CLIENT_COLUMN)} text not null,
        ${ident(TENANT_DATABASE_COLUMN)} uuid not null,
        ${columnDefs.join(',\n        ')},
        constraint ${pkName} primary key (${[...tenantKey, ...d.keyColumns.map((k) => ident(k))].join(', ')})
      )`);
    // Collations of the key columns are only known once the table exists.
    const coll = await client.query<{ attname: string }>(
      /* sql */ `select attname from pg_attribute where attrelid = to_regclass($1::text) and attname = any($2::text[]) and attcollation <> 0`,
      [t, d.keyColumns],
    );
    const collatable = new Set(coll.rows.map((r) => r.attname));
    const shape: RowShape = { table: t, columns: d.columns, keyColumns: d.keyColumns, collatableKeys: collatable };
    // Serves upload-from-version, delete-above-version and every manifest range scan, per tenant.
    await client.query(/* sql */ `create index ${versionIndex} on ${t} (${[...tenantKey, orderSql(shape)].join(', ')})`);
    // Second wall: the server's role sees only the tenant named in the transaction's settings.
    // Restrictive for the server's role only; other roles (analytics readers) are governed by their grants.
    await client.query(/* sql */ `alter table ${t} enable row level security`);
    await client.query(/* sql */ `alter table ${t} force row level security`);
    await client.query(
      /* sql */ `create policy tidemark_tenant_wall on ${t} as restrictive for all to current_user using (${tenantQual}) with check (${tenantQual})`,
    );
    await client.query(/* sql */ `create policy tidemark_readers on ${t} as permissive for all to public using (true) with check (true)`);
    await client.query(
      /* sql */ `insert into tidemark.replica_table (schema_name, table_name, columns, key_columns) values ($1::text, $2::text, $3::jsonb, $4::text[])`,
      [table.schema, table.name, JSON.stringify(d.columns), d.keyColumns],
    );
  }

  /** Begins a tenant's work on replica rows: tenant settings for the RLS policy, pinned output settings. */
  private async enterTenant(client: pg.ClientBase, tenant: Tenant): Promise<void> {
    await client.query(/* sql */ `select set_config('tidemark.client_id', $1::text, true), set_config('tidemark.database_id', $2::text, true)`, [
      tenant.clientId,
      tenant.databaseId,
    ]);
    await client.query(PINNED_SETTINGS_SQL);
  }

  private tenantWhere(alias?: string): string {
    const p = alias ? `${alias}.` : '';
    return `${p}${ident(TENANT_CLIENT_COLUMN)} = $1::text and ${p}${ident(TENANT_DATABASE_COLUMN)} = $2::uuid`;
  }

  async summary(tenant: Tenant, table: TableName): Promise<TableSummary> {
    return this.readState(this.pool, tenant, table);
  }

  private async lockState(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<void> {
    // Deletes and recounts hold the state row for their whole transaction; uploads lock it only by
    // their final update, so they load in parallel and take turns with these only to add their counts.
    await client.query(
      /* sql */ `select from tidemark.table_state where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text for update`,
      [tenant.clientId, tenant.databaseId, table.schema, table.name],
    );
  }

  private async readState(db: pg.Pool | pg.ClientBase, tenant: Tenant, table: TableName): Promise<TableSummary> {
    const { rows } = await db.query<StateRow>(
      /* sql */ `select ${STATE_COLUMNS} from tidemark.table_state where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`,
      [tenant.clientId, tenant.databaseId, table.schema, table.name],
    );
    const row = rows[0];
    if (!row) throw new ProtocolError(ErrorCode.REPLICA_TABLE_UNKNOWN, 404, `table ${formatTableName(table)} is not declared for this database`);
    return toSummary(table, row);
  }

  // --- rows ----------------------------------------------------------------------------------

  /**
   * Applies one batch of COPY text whole or not at all: COPY into a temporary staging table, then
   * one insert into the replica with the tenant columns added from the authenticated key, then the
   * state row, all in one transaction. Re-sending a batch changes nothing.
   *
   * `insertOnly` (the agent's first sync of a table, when the replica held none of its rows) skips
   * the upsert: a plain insert is about a quarter cheaper. A key that exists after all (a batch
   * re-sent after a lost answer) fails the batch with 409 TM_UPLOAD_CONFLICT and nothing written;
   * the agent then re-sends it as an upsert.
   *
   * The state row is locked only by its final update, so batches of one table can load in parallel
   * and take turns only to add their counts.
   */
  async upload(
    tenant: Tenant,
    table: TableName,
    body: Readable,
    options: { settle?: SettleParams; maxModified?: string; insertOnly?: boolean },
  ): Promise<UploadResult> {
    return withTransaction(this.pool, async (client) => {
      const replica = await this.requireReplica(client, tenant, table);
      const { shape } = replica;
      await this.enterTenant(client, tenant);
      const cols = columnListSql(shape);
      const rejected = (e: unknown): never => {
        if (e instanceof TidemarkError) throw e;
        const sqlstate = sqlstateOf(e);
        if (sqlstate === '23505' && options.insertOnly)
          throw new ProtocolError(ErrorCode.UPLOAD_CONFLICT, 409, 'some rows already exist; re-send the batch without insertOnly', { cause: e });
        if (isDataRejection(sqlstate)) throw new ProtocolError(ErrorCode.UPLOAD_REJECTED, 400, `rows rejected: ${(e as Error).message}`, { cause: e });
        throw e;
      };
      await client.query(/* sql */ `create temp table tidemark_stage on commit drop as select ${cols} from ${shape.table} with no data`);
      try {
        await pipeline(body, client.query(copyStreams.from(/* sql */ `copy tidemark_stage (${cols}) from stdin`)));
      } catch (e) {
        rejected(e);
      }
      const tenantCols = `${ident(TENANT_CLIENT_COLUMN)}, ${ident(TENANT_DATABASE_COLUMN)}`;
      const keys = shape.keyColumns.map((k) => ident(k));
      const nonKeys = shape.columns.filter((c) => !shape.keyColumns.includes(c.name)).map((c) => ident(c.name));
      const sets = nonKeys.map((c) => `${c} = excluded.${c}`).join(', ');
      let counts: { received: string; inserted: string; max_version: string | null } = { received: '0', inserted: '0', max_version: null };
      try {
        if (options.insertOnly) {
          const res = await client.query(
            /* sql */ `insert into ${shape.table} (${tenantCols}, ${cols}) select $1::text, $2::uuid, ${cols} from tidemark_stage`,
            [tenant.clientId, tenant.databaseId],
          );
          const { rows } = await client.query<{ max_version: string | null }>(
            /* sql */ `select max(${ident(VERSION_COLUMN)})::text as max_version from tidemark_stage`,
          );
          counts = { received: String(res.rowCount ?? 0), inserted: String(res.rowCount ?? 0), max_version: rows[0]?.max_version ?? null };
        } else {
          const { rows } = await client.query<{ received: string; inserted: string; max_version: string | null }>(
            /* sql */ `
            with up as (
              insert into ${shape.table} as t (${tenantCols}, ${cols})
              select $1::text, $2::uuid, ${cols} from tidemark_stage
              on conflict (${[tenantCols, ...keys].join(', ')}) do update set ${sets}
              -- xmax = 0 on the new row version means it was inserted, not updated
              returning (t.xmax = 0) as inserted, t.${ident(VERSION_COLUMN)} as v)
            select count(*)::text as received, count(*) filter (where inserted)::text as inserted, max(v)::text as max_version from up`,
            [tenant.clientId, tenant.databaseId],
          );
          counts = rows[0] as typeof counts;
        }
      } catch (e) {
        rejected(e);
      }
      const received = Number(counts.received);
      const inserted = Number(counts.inserted);
      const { rows } = await client.query<StateRow>(
        /* sql */ `
        update tidemark.table_state
           set row_count = row_count + $5::bigint,
               max_version = case when $6::bigint is null then max_version else greatest(max_version, $6::bigint) end,
               settled_version = coalesce($7::bigint, settled_version),
               settled_xmax = case when $7::bigint is null then settled_xmax else $8::bigint end,
               settled_xip = case when $7::bigint is null then settled_xip else $9::bigint[] end,
               max_modified = greatest(max_modified, $10::timestamptz),
               updated_at = now()
         where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text
        returning ${STATE_COLUMNS}`,
        [
          tenant.clientId,
          tenant.databaseId,
          table.schema,
          table.name,
          inserted,
          counts.max_version,
          options.settle?.settledVersion ?? null,
          options.settle?.settledXmax ?? null,
          options.settle?.settledXip ?? [],
          options.maxModified ?? null,
        ],
      );
      return { rowsReceived: received, rowsInserted: inserted, rowsUpdated: received - inserted, summary: toSummary(table, rows[0] as StateRow) };
    });
  }

  /**
   * Deletes by (key AND version), everything above a version, or all of the tenant's rows, and
   * refreshes the state row. Conditional on version, a manifest's delete can never remove a newer
   * row that an upload placed meanwhile.
   */
  async deleteRows(tenant: Tenant, table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return withTransaction(this.pool, async (client) => {
      const { shape } = await this.requireReplica(client, tenant, table);
      await this.enterTenant(client, tenant);
      await this.lockState(client, tenant, table);
      let deleted = 0;
      const v = ident(VERSION_COLUMN);
      if ('keys' in request) {
        if (request.keys.length > 0) {
          const params: unknown[] = [tenant.clientId, tenant.databaseId];
          const arrays = shape.keyColumns.map((_, i) => {
            params.push(request.keys.map((k) => k.key[i]));
            return `$${params.length}::text[]`;
          });
          params.push(request.keys.map((k) => k.version));
          const versions = `$${params.length}::bigint[]`;
          const aliases = shape.keyColumns.map((_, i) => `k${i}`);
          const matches = shape.keyColumns
            .map((k, i) => {
              const type = shape.columns.find((c) => c.name === k)?.type as string; // whitelisted at declaration
              return `t.${ident(k)} = d.${aliases[i]}::${type}`;
            })
            .join(' and ');
          const res = await client.query(
            /* sql */ `
            delete from ${shape.table} t using unnest(${[...arrays, versions].join(', ')}) as d(${[...aliases, 'v'].join(', ')})
             where ${this.tenantWhere('t')} and ${matches} and t.${v} = d.v`,
            params,
          );
          deleted = res.rowCount ?? 0;
        }
      } else if ('aboveVersion' in request) {
        const res = await client.query(/* sql */ `delete from ${shape.table} where ${this.tenantWhere()} and ${v} > $3::bigint`, [
          tenant.clientId,
          tenant.databaseId,
          request.aboveVersion,
        ]);
        deleted = res.rowCount ?? 0;
      } else {
        const res = await client.query(/* sql */ `delete from ${shape.table} where ${this.tenantWhere()}`, [tenant.clientId, tenant.databaseId]);
        deleted = res.rowCount ?? 0;
      }
      if (deleted > 0)
        await client.query(
          /* sql */ `
          update tidemark.table_state
             set row_count = row_count - $5::bigint,
                 max_version = (select max(${v}) from ${shape.table} where ${this.tenantWhere()}),
                 updated_at = now()
           where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`,
          [tenant.clientId, tenant.databaseId, table.schema, table.name, deleted],
        );
      return { rowsDeleted: deleted, summary: await this.readState(client, tenant, table) };
    });
  }

  /**
   * Recomputes the state row's count and max version from the rows (an index-only count of the
   * tenant's rows). Called by the agent after a full verification, and when counts differ although
   * no row does: someone edited the replica behind tidemark's back and the O(1) figures drifted.
   */
  async recount(tenant: Tenant, table: TableName): Promise<TableSummary> {
    return withTransaction(this.pool, async (client) => {
      const { shape } = await this.requireReplica(client, tenant, table);
      await this.enterTenant(client, tenant);
      await this.lockState(client, tenant, table);
      const v = ident(VERSION_COLUMN);
      await client.query(
        /* sql */ `
        update tidemark.table_state s
           set row_count = r.n, max_version = r.max_version, updated_at = now()
          from (select count(*) as n, max(${v}) as max_version from ${shape.table} where ${this.tenantWhere()}) r
         where s.client_id = $1::text and s.database_id = $2::uuid and s.schema_name = $3::text and s.table_name = $4::text`,
        [tenant.clientId, tenant.databaseId, table.schema, table.name],
      );
      return this.readState(client, tenant, table);
    });
  }

  /** A manifest of a range (summary, bucket hash sums, or rows of buckets): one read-only snapshot, one scan. */
  async manifest(tenant: Tenant, table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return withTransaction(
      this.pool,
      async (client) => {
        const { shape } = await this.requireReplica(client, tenant, table);
        await this.enterTenant(client, tenant);
        try {
          const { rows } = await client.query<Record<string, unknown>>(manifestQuery(shape, request, [tenant.clientId, tenant.databaseId], this.tenantWhere()));
          return manifestResponse(request, rows);
        } catch (e) {
          // 42883: no extended hash function for a column type (or PostgreSQL before 14): the agent hashes text instead.
          if (sqlstateOf(e) === '42883' && request.hashKind === 'record')
            throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `record hashing unsupported here: ${(e as Error).message}`, { cause: e });
          throw e;
        }
      },
      { isolation: 'repeatable read', readOnly: true },
    );
  }

  // --- resync --------------------------------------------------------------------------------

  /** Flags tables for a forced full resync; returns the flagged table names. */
  async requestResync(clientId: string, databaseId: string, tables: TableName[] | null): Promise<string[]> {
    const { rows } = await this.pool.query<{ schema_name: string; table_name: string }>(
      /* sql */ `
      update tidemark.table_state
         set resync_status = 'requested', resync_requested_at = now(), resync_started_at = null, resync_finished_at = null,
             resync_progress = 0, resync_rows_repaired = 0, resync_error = null
       where client_id = $1::text and database_id = $2::uuid
         and ($3::text[] is null or (schema_name, table_name) in (select s, t from unnest($3::text[], $4::text[]) as x(s, t)))
      returning schema_name, table_name`,
      [clientId, databaseId, tables ? tables.map((t) => t.schema) : null, tables ? tables.map((t) => t.name) : null],
    );
    return rows.map((r) => formatTableName({ schema: r.schema_name, name: r.table_name }));
  }

  async reportResync(tenant: Tenant, table: TableName, report: ResyncReport): Promise<TableSummary> {
    await this.pool.query(
      /* sql */ `
      update tidemark.table_state
         set resync_status = $5::text,
             resync_started_at = coalesce(resync_started_at, now()),
             resync_finished_at = case when $5::text in ('done', 'failed') then now() end,
             resync_progress = $6::double precision, resync_rows_repaired = $7::bigint, resync_error = $8::text
       where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text
         and resync_status is not null`,
      [tenant.clientId, tenant.databaseId, table.schema, table.name, report.status, report.progress, report.rowsRepaired, report.error ?? null],
    );
    return this.summary(tenant, table);
  }

  /** Pool figures for the metrics. */
  poolStats(): { total: number; idle: number; waiting: number } {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }
}
