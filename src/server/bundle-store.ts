/**
 * What the import of offline bundles keeps (README, Offline sites): the API key hash a bundle's MAC
 * is checked with (read from `tidemark.tenant_database`, owned by pg-tenants.ts), and per database
 * the last bundle imported (`tidemark.bundle_import`: its sequence refuses replays and older
 * bundles; its figures feed `tidemark status` and the admin API), created by migrations.ts.
 */
import type pg from 'pg';

import { sqlstateOf } from '../shared/pg.js';
import type { BundleStatus } from '../shared/protocol/bundle.js';
import type { Tenant } from './tenant-scope.js';

export interface BundleImportRecord {
  sequence: string;
  createdAt: Date;
  importedAt: Date;
  rows: number;
  deletes: number;
  bytes: number;
}

export interface BundleStore {
  /** The stored SHA-256 of the database's API key, or null when the database is not registered. */
  apiKeyHash(clientId: string, databaseId: string): Promise<Buffer | null>;
  lastImport(tenant: Tenant): Promise<BundleImportRecord | null>;
  /** Records an import; false (nothing recorded) when one with this or a later sequence already is. */
  recordImport(tenant: Tenant, record: Omit<BundleImportRecord, 'importedAt'>): Promise<boolean>;
  /**
   * Whether a key-set frame's text has the shape the import reads it in (PgManifests.absentKeys):
   * `{"buckets": [int, ...], "rows": [[[key text, ...], "version"], ...]}`, read by PostgreSQL's
   * own JSON parser; 'not json' when it does not parse as jsonb.
   */
  checkKeySet(text: string): Promise<'ok' | 'not json' | 'invalid'>;
}

/**
 * bundleKeysSchema, as PostgreSQL reads it: buckets are written as plain integers (the import casts
 * their text to int), versions as decimal strings within bigint, keys as arrays of strings. CASE
 * guards each function that would raise on a value of another type (AND does not short-circuit).
 */
const KEY_SET_SHAPE_SQL = /* sql */ `
  select case when jsonb_typeof(j) = 'object' and jsonb_typeof(j -> 'buckets') = 'array' and jsonb_typeof(j -> 'rows') = 'array'
    then not exists (
           select from jsonb_array_elements(j -> 'buckets') as b(v)
            where jsonb_typeof(v) <> 'number' or v::text !~ '^[0-9]{1,9}$')
     and not exists (
           select from jsonb_array_elements(j -> 'rows') as r(v)
            where case when jsonb_typeof(v) = 'array' and jsonb_array_length(v) = 2
                            and jsonb_typeof(v -> 0) = 'array' and jsonb_typeof(v -> 1) = 'string' and (v ->> 1) ~ '^[0-9]{1,19}$'
                       then (v ->> 1)::numeric > 9223372036854775807
                         or exists (select from jsonb_array_elements(v -> 0) as k(t) where jsonb_typeof(t) <> 'string')
                       else true end)
    else false end as ok
  from (select $1::jsonb as j) f`;

export class PgBundleStore implements BundleStore {
  constructor(private readonly pool: pg.Pool) {}

  async apiKeyHash(clientId: string, databaseId: string): Promise<Buffer | null> {
    const { rows } = await this.pool.query<{ api_key_hash: Buffer }>(
      /* sql */ `select api_key_hash from tidemark.tenant_database where client_id = $1::text and database_id = $2::uuid`,
      [clientId, databaseId],
    );
    return rows[0]?.api_key_hash ?? null;
  }

  async lastImport(tenant: Tenant): Promise<BundleImportRecord | null> {
    const { rows } = await this.pool.query<{ sequence: string; created_at: Date; imported_at: Date; rows: string; deletes: string; bytes: string }>(
      /* sql */ `select sequence::text, created_at, imported_at, rows::text, deletes::text, bytes::text
                   from tidemark.bundle_import where client_id = $1::text and database_id = $2::uuid`,
      [tenant.clientId, tenant.databaseId],
    );
    const r = rows[0];
    return r
      ? { sequence: r.sequence, createdAt: r.created_at, importedAt: r.imported_at, rows: Number(r.rows), deletes: Number(r.deletes), bytes: Number(r.bytes) }
      : null;
  }

  async checkKeySet(text: string): Promise<'ok' | 'not json' | 'invalid'> {
    try {
      const { rows } = await this.pool.query<{ ok: boolean }>(KEY_SET_SHAPE_SQL, [text]);
      return rows[0]?.ok ? 'ok' : 'invalid';
    } catch (e) {
      // Class 22 (data exception): the text is not JSON jsonb can hold (a syntax error, U+0000, a lone surrogate).
      if (sqlstateOf(e)?.startsWith('22')) return 'not json';
      throw e;
    }
  }

  async recordImport(tenant: Tenant, record: Omit<BundleImportRecord, 'importedAt'>): Promise<boolean> {
    // One statement: the upsert only moves the sequence forward.
    const { rowCount } = await this.pool.query(
      /* sql */ `insert into tidemark.bundle_import as b (client_id, database_id, sequence, created_at, rows, deletes, bytes)
                 values ($1::text, $2::uuid, $3::bigint, $4::timestamptz, $5::bigint, $6::bigint, $7::bigint)
                 on conflict (client_id, database_id) do update
                   set sequence = excluded.sequence, created_at = excluded.created_at, imported_at = now(),
                       rows = excluded.rows, deletes = excluded.deletes, bytes = excluded.bytes
                 where b.sequence < excluded.sequence`,
      [tenant.clientId, tenant.databaseId, record.sequence, record.createdAt, record.rows, record.deletes, record.bytes],
    );
    return rowCount === 1;
  }
}

/** The last bundle a database imported, and the cloud copy's age by it at `nowMs` (the export's time). */
export async function bundleStatusOf(bundles: BundleStore, tenant: Tenant, nowMs: number): Promise<BundleStatus> {
  const last = await bundles.lastImport(tenant);
  if (!last) return { lastImport: null, ageSeconds: null };
  return {
    lastImport: {
      sequence: last.sequence,
      createdAt: last.createdAt.toISOString(),
      importedAt: last.importedAt.toISOString(),
      rows: last.rows,
      deletes: last.deletes,
      bytes: last.bytes,
    },
    ageSeconds: Math.max(0, (nowMs - last.createdAt.getTime()) / 1000),
  };
}
