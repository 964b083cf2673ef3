import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { requestBudget } from '../../src/agent/run-budget.js';
import { freePort } from '../../src/cli/free-port.js';
import { createDatabase, dumpRows, startTestAgent, startTestServer } from '../support/fixtures.js';

const TYPES_TABLE = /* sql */ `
  create table public.everything (
    id integer primary key,
    big bigint,
    num numeric(20,6),
    txt text,
    vc varchar(40),
    flag boolean,
    tstz timestamptz,
    ts timestamp,
    d date,
    u uuid,
    j jsonb,
    b bytea,
    arr text[],
    iarr int[],
    f8 double precision
  )`;

describe('sync engine', () => {
  it('copies every type exactly, including NULLs, tabs, newlines, backslashes and non-ASCII', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(TYPES_TABLE);
    await local.query(/* sql */ `
      insert into everything values
        (1, 9223372036854775807, 12345678901234.123456, e'tab\\there\\nnew line\\\\back\\rslash', 'héllo wörld ✓ 日本', true,
         '2024-02-29 23:59:59.123456+05:30', '1999-12-31 23:59:59', '2000-01-01', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
         '{"a": [1, 2, {"b": "x\\ty"}], "é": null}', '\\x00ff0a5c09', array['a,b', 'c"d', null, e'e\\nf', '\\\\'], array[1, null, 3], 1.0000000000000002),
        (2, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
        (3, -1, -0.000001, '', '', false, '-infinity', 'infinity', '0001-01-01 BC', '00000000-0000-0000-0000-000000000000', '[]', '\\x', '{}', '{}', 'NaN')`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('everything');
    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    const remote = await dumpRows(server.db, 'public.everything');
    expect(remote).toEqual(await dumpRows(local, 'public.everything'));
    expect(remote).toHaveLength(3);
  });

  it('uploads inserts and updates, and removes rows deleted locally', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 1000) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick()).converged).toBe(true);

    await local.query(`update items set name = 'changed' where id % 10 = 0`);
    await local.query(`delete from items where id in (5, 500, 999)`);
    await local.query(`insert into items values (2000, 'new')`);
    const second = await agent.agent.tick({ checkCount: true });
    expect(second.converged).toBe(true);
    expect(second.tables[0]?.rowsDeleted).toBe(3);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('goes on where the last run stopped when a first sync outlasts the run budget', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 5000) i`);
    const reg = await server.register('acme');
    // A budget that lets a run send only a few small batches (counted in requests: the same on any machine).
    await using agent = await startTestAgent(
      local,
      server,
      reg,
      { batch: { minBytes: 1024, maxBytes: 4096, initialBytes: 4096 } },
      { runBudget: requestBudget(3) },
    );
    await agent.local.tracking.track('items');
    let sent = 0;
    let runs = 0;
    let converged = false;
    while (!converged && runs < 100) {
      const r = await agent.agent.tick();
      runs++;
      sent += r.tables[0]?.rowsUploaded ?? 0;
      converged = r.converged;
      // Rows written between runs are picked up too.
      if (runs === 2) await local.query(`update items set name = 'changed' where id in (1, 4999)`);
    }
    expect(converged).toBe(true);
    expect(runs).toBeGreaterThan(2);
    // Every row once, plus the two updated ones again (one of them may not have been sent yet).
    expect(sent).toBeGreaterThanOrEqual(5001);
    expect(sent).toBeLessThanOrEqual(5002);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    expect(await local.query(`select upload_resume from tidemark.table_state`)).toEqual([{ upload_resume: null }]);
  });

  it("notices deletes from the table's delete counter, without counting rows every run", async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 300)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick()).converged).toBe(true);
    // An old row (no new version) disappears: only counts or manifests can see it.
    await local.query(`delete from items where id = 150`);
    // The deleting backend publishes its statistics asynchronously; wait until they show the delete
    // (however long a busy machine takes: the test's timeout is the safety net).
    for (;;) {
      const [row] = await local.query<{ n: string }>(`select n_tup_del::text as n from pg_stat_user_tables where relname = 'items'`);
      if (row?.n === '1') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const result = await agent.agent.tick({ checkCount: false });
    expect(result.tables[0]?.rowsDeleted).toBe(1);
    expect(result.converged).toBe(true);
    expect(await server.db.query(`select count(*)::int as n from items where id = 150`)).toEqual([{ n: 0 }]);
  });

  it('delivers a row written by a transaction that began before a run and committed after it', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');

    const slow = new pg.Client({ connectionString: local.url });
    await slow.connect();
    try {
      await slow.query('begin');
      await slow.query(`insert into items values (1, 'slow')`); // takes its version now
      await local.query(`insert into items values (2, 'fast')`); // a higher version, committed first
      const first = await agent.agent.tick();
      expect(first.tables[0]?.rowsUploaded).toBe(1);
      await slow.query('commit');
    } finally {
      await slow.end();
    }
    const second = await agent.agent.tick({ checkCount: true });
    expect(second.converged).toBe(true);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('converges when the local database goes back to an older state (remote ahead)', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'v1' from generate_series(1, 100) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    // Save the state, then move on and sync the newer state.
    await local.query(`create table backup as select id, name, tidemark_version from items`);
    await local.query(`update items set name = 'v2' where id <= 50`);
    await local.query(`insert into items select i, 'v2' from generate_series(101, 150) i`);
    await agent.agent.tick();
    expect(await server.db.query(`select count(*)::int as n from items`)).toEqual([{ n: 150 }]);
    // "Restore the backup": the old rows with their old versions.
    await local.query(`alter table items disable trigger tidemark_stamp_version`);
    await local.query(`delete from items`);
    await local.query(`insert into items (id, name, tidemark_version) select id, name, tidemark_version from backup`);
    await local.query(`alter table items enable trigger tidemark_stamp_version`);
    const result = await agent.agent.tick({ checkCount: true });
    expect(result.converged).toBe(true);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items', { exclude: [] }).then((r) => r));
  });

  it('keeps two tenants with the same table and keys apart', async () => {
    await using localA = await createDatabase('local');
    await using localB = await createDatabase('local');
    await using server = await startTestServer();
    for (const [db, who] of [
      [localA, 'a'],
      [localB, 'b'],
    ] as const) {
      await db.query(`create table items (id int primary key, owner text not null)`);
      await db.query(`insert into items select i, '${who}' from generate_series(1, 20) i`);
    }
    const regA = await server.register('alpha');
    const regB = await server.register('beta');
    await using agentA = await startTestAgent(localA, server, regA);
    await using agentB = await startTestAgent(localB, server, regB);
    await agentA.local.tracking.track('items');
    await agentB.local.tracking.track('items');
    expect((await agentA.agent.tick()).converged).toBe(true);
    expect((await agentB.agent.tick()).converged).toBe(true);
    await localB.query(`delete from items where id <= 10`);
    expect((await agentB.agent.tick({ checkCount: true })).converged).toBe(true);
    const rows = await server.db.query<{ owner: string; n: number }>(
      `select owner, tidemark_database_id::text as db, count(*)::int as n from items group by 1, 2 order by 1`,
    );
    expect(rows).toEqual([
      { owner: 'a', db: regA.databaseId, n: 20 },
      { owner: 'b', db: regB.databaseId, n: 10 },
    ]);
  });

  it('fails the run without marking anything done when the server is unreachable', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 10)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, { url: `http://127.0.0.1:${await freePort()}` }, reg);
    await agent.local.tracking.track('items');
    const result = await agent.agent.tick();
    expect(result.converged).toBe(false);
    expect(result.tables[0]?.error?.code).toBe('TM_SERVER_UNAVAILABLE');
    const state = await server.db.query(`select * from tidemark.table_state`);
    expect(state).toEqual([]);
    // The next run against the real server does all the work.
    await using agent2 = await startTestAgent(local, server, reg);
    expect((await agent2.agent.tick()).converged).toBe(true);
  });
});
