/**
 * Owns the DDL of tidemark's own state in the local database (schema `tidemark`): the version
 * trigger function and the tables of the stores (tracked_table: local-catalog.ts and
 * table-tracking.ts; agent: agent-identity.ts; table_state: table-state-store.ts; batch_history:
 * batch-history.ts; quarantine: quarantine-store.ts). Installed idempotently at every start.
 */
import type pg from 'pg';

import { qualified, tryUnderLockTimeout, withTransaction } from '../../shared/pg.js';

const STATE_SCHEMA_SQL = /* sql */ `
  create schema if not exists tidemark;
  create or replace function tidemark.stamp_version() returns trigger language plpgsql as $fn$
  begin
    -- The writing transaction's 64-bit id: versions order by transaction start (DESIGN.md, Row versions).
    new.tidemark_version := pg_current_xact_id()::text::bigint;
    return new;
  end
  $fn$;
  create table if not exists tidemark.tracked_table (
    schema_name text not null,
    table_name text not null,
    key_columns text[],
    modified_column text,
    tracked_at timestamptz not null default now(),
    primary key (schema_name, table_name)
  );
  create table if not exists tidemark.agent (
    singleton boolean primary key default true check (singleton),
    agent_id uuid not null
  );
  create table if not exists tidemark.table_state (
    schema_name text not null,
    table_name text not null,
    last_delete_count bigint,
    last_stats_identity text,
    verify_cursor jsonb,
    verify_pass_started_at timestamptz,
    verify_rows_done bigint not null default 0,
    last_success_at timestamptz,
    primary key (schema_name, table_name)
  );
  alter table tidemark.table_state add column if not exists last_success_at timestamptz;
  alter table tidemark.table_state add column if not exists upload_resume jsonb;
  alter table tidemark.table_state add column if not exists last_insert_count bigint;
  alter table tidemark.table_state add column if not exists last_settled_version bigint;
  alter table tidemark.table_state add column if not exists last_settled_xmax bigint;
  alter table tidemark.table_state add column if not exists full_verify_pending boolean not null default false;
  -- why the table's last run failed ("message [CODE]"), until a run ends without error
  alter table tidemark.table_state add column if not exists last_error text;
  -- the declaration of each table the server last accepted: what a schema change is compared with
  create table if not exists tidemark.accepted_declaration (
    schema_name text not null,
    table_name text not null,
    declaration jsonb not null,
    primary key (schema_name, table_name)
  );
  create table if not exists tidemark.batch_history (
    id bigint generated always as identity primary key,
    schema_name text not null,
    table_name text not null,
    finished_at timestamptz not null default now(),
    rows int not null,
    bytes bigint not null,
    duration_seconds double precision not null,
    outcome text not null,
    error_class text
  );
  create index if not exists batch_history_table on tidemark.batch_history (schema_name, table_name, id);
  create table if not exists tidemark.quarantine (
    schema_name text not null,
    table_name text not null,
    key_text text[] not null,
    version bigint not null,
    error text not null,
    attempts int not null default 1,
    first_failed_at timestamptz not null default now(),
    next_retry_at timestamptz not null,
    primary key (schema_name, table_name, key_text)
  );`;

/** How long an upgrade waits for a tracked table's lock before leaving it for the next start. */
const UPGRADE_LOCK_TIMEOUT = '5s';

/**
 * Creates or upgrades the state schema; concurrent installers wait for each other. Then upgrades
 * the tracking of tables tracked by older versions: the version trigger fires ALWAYS (also in
 * sessions with session_replication_role = replica). Returns the tables whose upgrade waited too
 * long for their lock (busy writers): they are upgraded at the next start or `track`.
 */
export async function installStateSchema(pool: pg.Pool): Promise<{ notUpgraded: string[] }> {
  await withTransaction(pool, async (c) => {
    await c.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.install'))`);
    await c.query(STATE_SCHEMA_SQL);
  });
  const { rows } = await pool.query<{ schema_name: string; table_name: string }>(
    /* sql */ `select t.schema_name, t.table_name from tidemark.tracked_table t
       join pg_trigger g on g.tgrelid = to_regclass(format('%I.%I', t.schema_name, t.table_name)) and g.tgname = 'tidemark_stamp_version'
      where g.tgenabled <> 'A' order by 1, 2`,
  );
  const notUpgraded: string[] = [];
  for (const r of rows) {
    // On a partitioned table this reaches every partition.
    const sql = /* sql */ `alter table ${qualified(r.schema_name, r.table_name)} enable always trigger tidemark_stamp_version`;
    if (!(await tryUnderLockTimeout(pool, UPGRADE_LOCK_TIMEOUT, sql))) notUpgraded.push(`${r.schema_name}.${r.table_name}`);
  }
  return { notUpgraded };
}

/** Whether a table of the state schema exists yet (read-only commands run before any install). */
export async function stateTableExists(pool: pg.Pool, table: 'tracked_table' | 'quarantine'): Promise<boolean> {
  const { rows } = await pool.query<{ ok: boolean }>(/* sql */ `select to_regclass($1::text) is not null as ok`, [`tidemark.${table}`]);
  return rows[0]?.ok === true;
}
