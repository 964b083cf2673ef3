/**
 * Replica tables' DDL: the check of a declaration's form and the creation of a replica (tenant columns leading the key and every index, row-level security
 * by tenant).
 */
import { createHash } from 'node:crypto';

import type pg from 'pg';

import { ErrorCode, ProtocolError, toError } from '../shared/errors.js';
import { ident, isSafeTypeName, qualified, SqlState, sqlstateOf, tryUnderLockTimeout } from '../shared/pg.js';
import {
  type Collation,
  type ColumnSpec,
  type TableDeclaration,
  type TableName,
  TENANT_CLIENT_COLUMN,
  TENANT_DATABASE_COLUMN,
  VERSION_COLUMN,
} from '../shared/protocol.js';
import { orderSql, type RowShape } from '../shared/row-shape.js';
import { checkColumnTypes } from './column-types.js';

const MAX_KEY_COLUMNS = 32;
const RESERVED = new Set([TENANT_CLIENT_COLUMN, TENANT_DATABASE_COLUMN]);
/** PostgreSQL's system columns: a user column cannot have their names. */
const SYSTEM_COLUMNS = new Set(['tableoid', 'xmin', 'cmin', 'xmax', 'cmax', 'ctid', 'oid']);

/**
 * SQLSTATEs by which PostgreSQL refuses a replica's DDL because of what the declaration says (a
 * type with modifiers out of range, a clause where a type belongs): the caller's mistake, a 400.
 * 42501 (insufficient privilege) and the rest stay server errors.
 */
const DECLARATION_REFUSED = new Set([
  '42601', // syntax_error
  '42611', // invalid_column_definition
  '42704', // undefined_object (a type)
  '42804', // datatype_mismatch
  '42P16', // invalid_table_definition
  '42P17', // invalid_object_definition
  '42883', // undefined_function (a type without a btree operator class in the key)
  '0A000', // feature_not_supported
  '22023', // invalid_parameter_value (e.g. varchar(99999999))
]);

/**
 * The tenant wall's condition: both tenant columns equal the transaction's settings. Each setting is
 * read once per statement (an uncorrelated subquery is an init plan), not once per row: a first
 * sync's insert of a million rows paid about 0.6 s of PostgreSQL CPU for the per-row
 * `current_setting` calls (docs/scaling.md, First sync).
 */
const TENANT_WALL = `${ident(TENANT_CLIENT_COLUMN)} = (select current_setting('tidemark.client_id', true)) and ${ident(TENANT_DATABASE_COLUMN)} = (select nullif(current_setting('tidemark.database_id', true), '')::uuid)`;

/** How long the start-time upgrade of a replica's wall waits for its table (readers hold it). */
const WALL_UPGRADE_LOCK_TIMEOUT = '1s';

/**
 * Gives replica tables created by earlier servers the wall of today (TENANT_WALL): the same
 * condition, read once per statement. Run at start, one table per transaction; ALTER POLICY takes
 * the table's exclusive lock, so a table someone holds (a long report) is left for the next start,
 * with a warning, and keeps its former wall, which is as tight, only slower.
 */
export async function upgradeTenantWalls(pool: pg.Pool, warn: (table: string, reason: string) => void): Promise<number> {
  const { rows } = await pool.query<{ schema_name: string; table_name: string }>(/* sql */ `
    select r.schema_name, r.table_name
      from tidemark.replica_table r
      join pg_policy p on p.polrelid = to_regclass(format('%I.%I', r.schema_name, r.table_name)) and p.polname = 'tidemark_tenant_wall'
     where pg_get_expr(p.polqual, p.polrelid) not like '%SELECT current_setting(%'`);
  let upgraded = 0;
  for (const r of rows) {
    const t = qualified(r.schema_name, r.table_name);
    const label = `${r.schema_name}.${r.table_name}`;
    try {
      const sql = /* sql */ `alter policy tidemark_tenant_wall on ${t} using (${TENANT_WALL}) with check (${TENANT_WALL})`;
      if (await tryUnderLockTimeout(pool, WALL_UPGRADE_LOCK_TIMEOUT, sql)) upgraded++;
      else warn(label, `its lock was not granted within ${WALL_UPGRADE_LOCK_TIMEOUT}`);
    } catch (e) {
      // A table another role owns: the server may not alter its policy.
      if (sqlstateOf(e) !== SqlState.INSUFFICIENT_PRIVILEGE) throw e;
      warn(label, toError(e).message);
    }
  }
  return upgraded;
}

/** Validates a declaration's form; types are further resolved by the database. */
export function checkDeclaration(d: TableDeclaration): void {
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
    if (SYSTEM_COLUMNS.has(c.name)) bad(`column name ${c.name} is a PostgreSQL system column name`);
    if (seen.has(c.name)) bad(`duplicate column ${c.name}`);
    seen.add(c.name);
    if (!isSafeTypeName(c.type))
      throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `column ${c.name} has an unsupported type ${JSON.stringify(c.type)}`);
  }
}

/** What the admin allows tenants to declare (server config). */
export interface DeclarationPolicy {
  /** Types outside pg_catalog's built-in data types that tenants may use, as `schema.name`. */
  admittedTypes: ReadonlySet<string>;
  /** Quota: tables one tenant (database) may declare. */
  maxTables: number;
  /** Quota: columns of one declared table, the version column included. */
  maxColumns: number;
}

/**
 * Refuses schemas the server keeps for itself or PostgreSQL's own: `tidemark`, the server role's
 * own schema (`$user` on its search path, where unqualified names would resolve), `pg_*` and
 * information_schema, in any letter case.
 */
export function checkSchemaName(table: TableName, serverRole: string): void {
  const s = table.schema.toLowerCase();
  if (s === 'tidemark' || s.startsWith('pg_') || s === 'information_schema' || table.schema === serverRole || s === serverRole.toLowerCase())
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `schema ${table.schema} is reserved`);
}

/** Key columns with a collation (compared in byte order, COLLATE "C", on both sides). */
export async function collatableKeys(client: pg.ClientBase, table: TableName, keyColumns: readonly string[]): Promise<Set<string>> {
  const { rows } = await client.query<{ attname: string }>(
    /* sql */ `select attname from pg_attribute where attrelid = to_regclass($1::text) and attname = any($2::text[]) and attcollation <> 0`,
    [qualified(table.schema, table.name), keyColumns],
  );
  return new Set(rows.map((r) => r.attname));
}

/**
 * Checks that a column's collation exists on the server: the replica column keeps the local
 * collation (it decides equality, order and uniqueness), so a missing one is the operator's to create.
 */
export async function checkCollation(client: pg.ClientBase, column: string, collation: Collation): Promise<void> {
  const { rows } = await client.query<{ ok: boolean }>(
    /* sql */ `select exists (select from pg_collation c join pg_namespace n on n.oid = c.collnamespace
       where n.nspname = $1::text and c.collname = $2::text
         and c.collencoding in (-1, (select encoding from pg_database where datname = current_database()))) as ok`,
    [collation.schema, collation.name],
  );
  if (!rows[0]?.ok) {
    const name = qualified(collation.schema, collation.name);
    throw new ProtocolError(
      ErrorCode.COLUMN_TYPE_UNSUPPORTED,
      400,
      `column ${column} uses collation ${name}, which the server database does not have: create it there with the local definition (create collation ${name} (provider = ..., locale = ..., deterministic = ...); see pg_collation locally), then the next run declares the table again`,
    );
  }
}

/**
 * A name for an object derived from a table name (constraints, indexes): at most 63 bytes, and
 * distinct for distinct tables although PostgreSQL would truncate long names to the same prefix.
 */
export function derivedName(table: TableName, suffix: string): string {
  let base = '';
  for (const ch of table.name) {
    if (Buffer.byteLength(base + ch) > 40) break;
    base += ch;
  }
  const hash = createHash('sha256').update(`${table.schema}\0${table.name}`).digest('hex').slice(0, 8);
  return `${base}_${hash}_${suffix}`;
}

/** A refusal by PostgreSQL of a replica's DDL because of what the declaration says: a 400; anything else as it is. */
export function refusedByDatabase(e: unknown): Error {
  const sqlstate = sqlstateOf(e);
  if (sqlstate !== undefined && DECLARATION_REFUSED.has(sqlstate))
    return new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `the server database refused the declared columns: ${toError(e).message}`, { cause: e });
  return toError(e);
}

/**
 * Creates a replica table with its key, version index and tenant wall, and records its
 * declaration. A relation of that name that tidemark did not create is refused with `taken()`:
 * the caller's policy refusal, so the answer does not tell what the server database holds.
 */
export async function createReplica(
  client: pg.ClientBase,
  table: TableName,
  d: TableDeclaration,
  policy: DeclarationPolicy,
  taken: () => Error,
): Promise<void> {
  try {
    await createReplicaTable(client, table, d, policy, taken);
  } catch (e) {
    if (e instanceof ProtocolError) throw e;
    throw refusedByDatabase(e);
  }
}

async function createReplicaTable(client: pg.ClientBase, table: TableName, d: TableDeclaration, policy: DeclarationPolicy, taken: () => Error): Promise<void> {
  await checkColumnTypes(client, d.columns, policy.admittedTypes);
  for (const c of d.columns) if (c.collation) await checkCollation(client, c.name, c.collation);
  const t = qualified(table.schema, table.name);
  const exists = await client.query<{ ok: boolean }>(/* sql */ `select to_regclass($1::text) is not null as ok`, [t]);
  if (exists.rows[0]?.ok) throw taken();
  // Types passed isSafeTypeName (a whitelist without quotes or punctuation) and to_regtype above.
  // Collations are quoted identifiers that exist on the server (checkCollation).
  const collate = (c: ColumnSpec): string => (c.collation ? ` collate ${qualified(c.collation.schema, c.collation.name)}` : '');
  const columnDefs = d.columns.map((c) => `${ident(c.name)} ${c.type}${collate(c)}${c.notNull || d.keyColumns.includes(c.name) ? ' not null' : ''}`);
  const tenantKey = [ident(TENANT_CLIENT_COLUMN), ident(TENANT_DATABASE_COLUMN)];
  const pkName = ident(derivedName(table, 'tm_pkey'));
  const versionIndex = ident(derivedName(table, 'tm_version_idx'));
  await client.query(/* sql */ `create schema if not exists ${ident(table.schema)}`);
  await client.query(/* sql */ `
    create table ${t} (
      ${ident(TENANT_CLIENT_COLUMN)} text not null,
      ${ident(TENANT_DATABASE_COLUMN)} uuid not null,
      ${columnDefs.join(',\n      ')},
      constraint ${pkName} primary key (${[...tenantKey, ...d.keyColumns.map((k) => ident(k))].join(', ')})
    )`);
  // Collations of the key columns are only known once the table exists.
  const shape: RowShape = { table: t, columns: d.columns, keyColumns: d.keyColumns, collatableKeys: await collatableKeys(client, table, d.keyColumns) };
  // Serves upload-from-version, delete-above-version and every manifest range scan, per tenant.
  await client.query(/* sql */ `create index ${versionIndex} on ${t} (${[...tenantKey, orderSql(shape)].join(', ')})`);
  // Second wall: the server's role sees only the tenant named in the transaction's settings.
  // Restrictive for the server's role only; other roles (analytics readers) are governed by their grants.
  await client.query(/* sql */ `alter table ${t} enable row level security`);
  await client.query(/* sql */ `alter table ${t} force row level security`);
  await client.query(
    /* sql */ `create policy tidemark_tenant_wall on ${t} as restrictive for all to current_user using (${TENANT_WALL}) with check (${TENANT_WALL})`,
  );
  await client.query(/* sql */ `create policy tidemark_readers on ${t} as permissive for all to public using (true) with check (true)`);
  await client.query(
    /* sql */ `insert into tidemark.replica_table (schema_name, table_name, columns, key_columns) values ($1::text, $2::text, $3::jsonb, $4::text[])`,
    [table.schema, table.name, JSON.stringify(d.columns), d.keyColumns],
  );
}
