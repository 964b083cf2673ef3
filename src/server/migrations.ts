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
  -- per (tenant, table): the shape this tenant last declared and the server accepted (the replica
  -- table is the union of these), and whether its latest declaration was refused (blocked)
  create table tidemark.tenant_table_shape (
    client_id text not null,
    database_id uuid not null,
    schema_name text not null,
    table_name text not null,
    columns jsonb not null,
    key_columns text[] not null,
    declaration_hash text not null,
    schema_state text not null default 'in_sync' check (schema_state in ('in_sync', 'blocked')),
    schema_reason text,
    changed_at timestamptz,
    applied_at timestamptz not null default now(),
    primary key (client_id, database_id, schema_name, table_name),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade,
    foreign key (schema_name, table_name) references tidemark.replica_table
  );
  -- which tenants declare a column (the replica drops it once none does): jsonb containment
  create index tenant_table_shape_columns on tidemark.tenant_table_shape using gin (columns jsonb_path_ops);

  -- the admin's catalog of admitted tables: the key every tenant must declare; provisional when
  -- admitted by a first declaration (replicaAdmission: auto) rather than by the admin
  create table tidemark.admitted_table (
    schema_name text not null,
    table_name text not null,
    key_columns jsonb not null,
    provisional boolean not null,
    admitted_at timestamptz not null default now(),
    primary key (schema_name, table_name)
  );

  -- tables declared before: every tenant declared the replica's shape, which is admitted as it is
  insert into tidemark.admitted_table (schema_name, table_name, key_columns, provisional)
  select r.schema_name, r.table_name,
         (select jsonb_agg(e order by o) from jsonb_array_elements(r.columns) with ordinality x(e, o) where o between 2 and 1 + cardinality(r.key_columns)),
         false
    from tidemark.replica_table r;
  insert into tidemark.tenant_table_shape (client_id, database_id, schema_name, table_name, columns, key_columns, declaration_hash)
  select s.client_id, s.database_id, s.schema_name, s.table_name, r.columns, r.key_columns, ''
    from tidemark.table_state s join tidemark.replica_table r using (schema_name, table_name);`,
  // Fleet (fleet-store.ts): what agents report after their runs. The latest report per database and
  // per (database, table), and the last RUN_HISTORY_LIMIT runs per database.
  /* sql */ `
  create table tidemark.agent_report (
    client_id text not null,
    database_id uuid not null,
    reported_at timestamptz not null,
    agent_version text not null,
    -- the last report in which every table was ok
    last_success_at timestamptz,
    horizon_age_seconds double precision,
    -- reported runs that found rows differing (verification, count checks), ever
    mismatch_runs bigint not null default 0,
    primary key (client_id, database_id),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade
  );
  create table tidemark.table_report (
    client_id text not null,
    database_id uuid not null,
    schema_name text not null,
    table_name text not null,
    reported_at timestamptz not null,
    outcome text not null,
    error_code text,
    error_message text,
    rows_behind bigint,
    quarantined_rows bigint not null,
    quarantined jsonb not null,
    lag_seconds double precision,
    local_count bigint,
    local_max_version text,
    remote_count bigint,
    remote_max_version text,
    schema_state jsonb,
    primary key (client_id, database_id, schema_name, table_name),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade
  );
  create table tidemark.run_report (
    client_id text not null,
    database_id uuid not null,
    seq bigint generated always as identity,
    started_at timestamptz not null,
    reported_at timestamptz not null default now(),
    duration_seconds double precision not null,
    outcome text not null,
    tables jsonb not null,
    primary key (client_id, database_id, seq),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade
  );`,
  // enroll: enrollment tokens and several keys per database (rotation with an overlap window).
  /* sql */ `
  -- single- or limited-use tokens an admin hands to a client, so registering needs no admin key
  create table tidemark.enrollment_token (
    client_id text not null,
    token_hash bytea not null,
    uses_left int not null check (uses_left >= 0),
    expires_at timestamptz not null,
    created_at timestamptz not null default now(),
    primary key (client_id, token_hash)
  );
  create unique index enrollment_token_hash on tidemark.enrollment_token (token_hash);

  -- every key that opens a database: 'active' (retired_at set once a newer key is confirmed, null
  -- until then) or 'pending' (issued by a rotation, not confirmed yet; it authenticates already)
  create table tidemark.database_key (
    client_id text not null,
    database_id uuid not null,
    key_hash bytea not null,
    state text not null check (state in ('active', 'pending')),
    created_at timestamptz not null default now(),
    retire_at timestamptz,
    primary key (client_id, database_id, key_hash),
    foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade
  );
  create unique index database_key_hash on tidemark.database_key (key_hash);
  -- tenant_database.api_key_hash stays the database's current confirmed key (offline bundles are checked with it)
  insert into tidemark.database_key (client_id, database_id, key_hash, state)
  select client_id, database_id, api_key_hash, 'active' from tidemark.tenant_database;`,
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
