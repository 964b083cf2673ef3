import type pg from 'pg';

import { withTransaction } from '../shared/pg.js';

/**
 * The server's own catalog, schema `tidemark`. Every table leads with the tenant columns
 * (client_id, database_id) so it can be distributed by tenant. Applied in order, once each, under an
 * advisory lock so that several server instances can start together.
 */
const MIGRATIONS: readonly string[] = [
  /* sql */ `
  create table tidemark.tenant_database (
    client_id text not null,
    database_id uuid not null,
    name text not null,
    api_key_hash bytea not null,
    created_at timestamptz not null default now(),
    lease_agent_id text,
    lease_expires_at timestamptz,
    primary key (client_id, database_id)
  );
  -- an API key resolves to exactly one tenant
  create unique index tenant_database_api_key_hash on tidemark.tenant_database (api_key_hash);
  create unique index tenant_database_database_id on tidemark.tenant_database (database_id);

  -- one row per replicated table (shared by all tenants): the declared wire shape
  create table tidemark.replica_table (
    schema_name text not null,
    table_name text not null,
    columns jsonb not null,
    key_columns text[] not null,
    created_at timestamptz not null default now(),
    primary key (schema_name, table_name)
  );

  -- per (tenant, table): the O(1) summary, updated in the same transaction as the rows
  create table tidemark.table_state (
    client_id text not null,
    database_id uuid not null,
    schema_name text not null,
    table_name text not null,
    row_count bigint not null default 0,
    max_version bigint,
    settled_version bigint not null default 0,
    settled_xmax bigint,
    settled_xip bigint[] not null default '{}',
    max_modified timestamptz,
    updated_at timestamptz,
    resync_status text,
    resync_requested_at timestamptz,
    resync_started_at timestamptz,
    resync_finished_at timestamptz,
    resync_progress double precision not null default 0,
    resync_rows_repaired bigint not null default 0,
    resync_error text,
    primary key (client_id, database_id, schema_name, table_name),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade,
    foreign key (schema_name, table_name) references tidemark.replica_table
  );`,
  /* sql */ `
  -- offline sites (bundle-store.ts): per database, the last bundle imported (its sequence refuses
  -- replays and older bundles). Servers before this migration created the table on first use with
  -- this very shape, hence "if not exists": their rows are kept.
  create table if not exists tidemark.bundle_import (
    client_id text not null,
    database_id uuid not null,
    sequence bigint not null,
    created_at timestamptz not null,
    imported_at timestamptz not null default now(),
    rows bigint not null,
    deletes bigint not null,
    bytes bigint not null,
    primary key (client_id, database_id),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade
  );`,
];

/** Applies the migrations not applied yet; `upTo` (tests) stops after that many, as an older server would. */
export async function migrate(pool: pg.Pool, upTo: number = MIGRATIONS.length): Promise<void> {
  await withTransaction(pool, async (client) => {
    // One migrator at a time across server instances (key: 'tidemark' as a 32-bit hash).
    await client.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.migrate'))`);
    await client.query(/* sql */ `create schema if not exists tidemark`);
    await client.query(
      /* sql */ `create table if not exists tidemark.schema_migration (version int primary key, applied_at timestamptz not null default now())`,
    );
    const { rows } = await client.query<{ version: number }>(/* sql */ `select coalesce(max(version), 0) as version from tidemark.schema_migration`);
    const current = rows[0]?.version ?? 0;
    for (let v = current + 1; v <= Math.min(upTo, MIGRATIONS.length); v++) {
      await client.query(MIGRATIONS[v - 1] as string);
      await client.query(/* sql */ `insert into tidemark.schema_migration (version) values ($1::int)`, [v]);
    }
  });
}
