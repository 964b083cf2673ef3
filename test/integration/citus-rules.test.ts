/**
 * The server's SQL stays distributable (issue 10, target 7; docs/scaling.md, Citus): collected
 * through the server's pool while agents sync (first sync, changes, deletes, idle runs, a
 * verification, a resync report), every statement on the hot path is checked against the rules a
 * distributed PostgreSQL (Citus, distribution column tidemark_client_id / client_id) needs:
 *  - a statement on a replica table or on tidemark.table_state names the tenant (its distribution
 *    column) in its predicate or its inserted columns, so it routes to one shard group;
 *  - tidemark.tenant_database (a reference table there) is reached by the key's hash or by the tenant;
 *  - anything else is transaction control, a setting, the staging table, a catalog read, or one of
 *    the listed exceptions of docs/scaling.md.
 * And every replica table's key and indexes lead with the tenant columns.
 */
import { describe, expect, it } from 'vitest';

import { StatementCounter } from '../../src/server/statement-counter.js';
import { createDatabase, startTestAgent, startTestServer } from '../support/fixtures.js';

const REPLICAS = ['"public"."items"', '"public"."notes"'];

/** Statements that touch no tenant data, or are listed in docs/scaling.md as exceptions. */
const NEUTRAL: RegExp[] = [
  /^(begin|commit|rollback)\b/,
  /^select set_config\(/,
  /^set /,
  /^select current_user/,
  /^select 1$/,
  // The staging table of an upload: a temporary table of the session (on the coordinator).
  /^create temp table tidemark_stage /,
  /^copy tidemark_stage /,
  // (or its inline form for a small body: values of parameters, no table)
  /^(with tidemark_stage as materialized \(select [^;]* from unnest\([^;]*\) as s\([^)]*\)\) )?select max\("tidemark_version"\)::text as max_version from tidemark_stage$/,
  // The replica catalog and the admin's catalog of admitted tables: reference tables, by table name.
  /from tidemark\.replica_table where schema_name = \$1::text and table_name = \$2::text/,
  /from tidemark\.admitted_table where schema_name = \$1::text and table_name = \$2::text/,
  /^insert into tidemark\.admitted_table /,
  // pg_catalog reads (types and collations of declared columns).
  /\bpg_catalog\.|\bpg_attribute\b|\bpg_collation\b|\bpg_type\b|^select to_regclass\(/,
  // A new replica table's DDL and catalog row: once per table name for all tenants, not the hot
  // path (under Citus, followed by create_distributed_table: docs/scaling.md).
  /^(create|alter|comment on|grant|revoke) /,
  /^insert into tidemark\.replica_table /,
  // Exception 1 (docs/scaling.md): a new table's declaration serialises on its name (first declaration only).
  /^select pg_advisory_xact_lock\(hashtext\('tidemark\.declare'\)/,
];

function normalise(text: string): string {
  return text.replace(/\s+/g, ' ').trim().toLowerCase();
}

/** The server's own tables distributed by client_id, co-located with the replica tables (docs/scaling.md). */
const TENANT_TABLES = ['table_state', 'tenant_table_shape', 'agent_report', 'table_report', 'run_report'];

function problem(sql: string): string | null {
  const s = normalise(sql);
  if (NEUTRAL.some((r) => r.test(s))) return null;
  const touchesReplica = REPLICAS.some((t) => s.includes(t));
  const tenantTables = TENANT_TABLES.filter((t) => s.includes(`tidemark.${t}`));
  for (const t of tenantTables)
    if (!/\bclient_id = \$1::text/.test(s) && !new RegExp(`insert into tidemark\\.${t}( as \\w+)? \\(client_id`).test(s))
      return `${t} without the tenant (client_id = $1)`;
  // API keys (a reference table, like tenant_database): by the key's hash, or by the tenant.
  if (s.includes('tidemark.database_key') && !/key_hash = \$1::bytea|client_id = \$1::text/.test(s)) return 'database_key neither by key hash nor by tenant';
  if (touchesReplica && !s.includes('"tidemark_client_id"')) return 'replica table without the tenant column';
  if (s.includes('tidemark.tenant_database') && !/api_key_hash = \$1::bytea|client_id = \$1::text/.test(s))
    return 'tenant_database neither by key hash nor by tenant';
  if (!touchesReplica && tenantTables.length === 0 && !s.includes('tidemark.tenant_database') && !s.includes('tidemark.database_key'))
    return 'a statement the rules do not know';
  return null;
}

describe('Citus compatibility of the server SQL', () => {
  it('routes every hot-path statement by the tenant, and keys replica tables by it', async () => {
    await using local = await createDatabase('local');
    const counter = new StatementCounter(true);
    await using server = await startTestServer({}, { statements: counter });
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`create table notes (a text, b int, body text, primary key (a, b))`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 500) i`);
    await local.query(`insert into notes select 'k' || (i % 7), i, 'n' from generate_series(1, 200) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg, { verification: { periodHours: 1 } });
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('notes');
    counter.reset();

    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    await local.query(`update items set name = 'x' where id % 10 = 0`);
    await local.query(`delete from items where id > 480`);
    await local.query(`delete from notes where b < 20`);
    expect((await agent.agent.tick()).converged).toBe(true);
    for (let i = 0; i < 2; i++) expect((await agent.agent.tick()).converged).toBe(true);
    await server.db.query(`update items set name = 'tampered' where id = 5`);
    for (const r of await agent.agent.verify({ dryRun: false })) expect(r.error, r.table).toBeUndefined();

    const texts = [...new Set(counter.texts.map(normalise))];
    expect(texts.length).toBeGreaterThan(10);
    const bad = texts.map((t) => [problem(t), t.slice(0, 200)]).filter(([p]) => p !== null);
    expect(bad).toEqual([]);

    // Keys and indexes of replica tables lead with the tenant columns (the distribution column first).
    const indexes = await server.db.query<{ table: string; first: string; second: string }>(
      `select c.relname as table, a1.attname as first, a2.attname as second
         from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a1 on a1.attrelid = c.oid and a1.attnum = i.indkey[0]
         join pg_attribute a2 on a2.attrelid = c.oid and a2.attnum = i.indkey[1]
        where n.nspname = 'public' and c.relname in ('items', 'notes')`,
    );
    expect(indexes.length).toBeGreaterThanOrEqual(4);
    for (const ix of indexes) expect([ix.table, ix.first, ix.second]).toEqual([ix.table, 'tidemark_client_id', 'tidemark_database_id']);
  });
});
