import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestAgent, type TestDatabase, type TestServer } from '../support/fixtures.js';

async function syncedItems(rows: number) {
  const local = await createDatabase('local');
  const server = await startTestServer();
  await local.query(`create table items (id int primary key, name text not null)`);
  await local.query(`insert into items select i, 'v1' from generate_series(1, ${rows}) i`);
  const reg = await server.register('acme');
  const agent = await startTestAgent(local, server, reg);
  await agent.local.tracking.track('items');
  expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
  return { local, server, reg, agent };
}

const same = async (local: TestDatabase, server: TestServer, databaseId: string) =>
  expect(await dumpRows(server.db, 'public.items', { where: `tidemark_database_id = '${databaseId}'` })).toEqual(await dumpRows(local, 'public.items'));

/**
 * The "backup": the table and tidemark's state in the local database, as a file-level copy holds
 * them; then half the rows change, 50 are added, and a run sends them.
 */
async function backUpThenChange(local: TestDatabase, agent: TestAgent): Promise<void> {
  await local.query(`create table backup as select id, name, tidemark_version from items`);
  await local.query(`create table state_backup as select * from tidemark.table_state`);
  await local.query(`update items set name = 'v2' where id <= 50`);
  await local.query(`insert into items select i, 'v2' from generate_series(101, 150) i`);
  expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
}

/** "Restores" the backup: rows and tidemark's state as they were. */
async function restoreBackup(local: TestDatabase): Promise<void> {
  await local.query(`alter table items disable trigger tidemark_stamp_version`);
  await local.query(`delete from items; insert into items (id, name, tidemark_version) select id, name, tidemark_version from backup`);
  await local.query(`alter table items enable always trigger tidemark_stamp_version`);
  await local.query(`delete from tidemark.table_state; insert into tidemark.table_state select * from state_backup`);
}

describe('migrations and restores', () => {
  it('after a move to a new cluster (versions from its xid space), runs again cost what changed, and nothing is skipped', async () => {
    const { local, server, reg, agent } = await syncedItems(500);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    // What a pg_dump of the old cluster restored into a new initdb looks like: every row, and the
    // server, carry versions from the old cluster's transaction ids, far above this cluster's.
    const OFFSET = 4_000_000_000;
    const tenant = `tidemark_database_id = '${reg.databaseId}'`;
    await local.query(`alter table items disable trigger tidemark_stamp_version`);
    await local.query(`update items set tidemark_version = tidemark_version + ${OFFSET}`);
    await local.query(`alter table items enable always trigger tidemark_stamp_version`);
    await server.db.query(`update items set tidemark_version = tidemark_version + ${OFFSET} where ${tenant}`);
    await server.db.query(
      `update tidemark.table_state set max_version = max_version + ${OFFSET}, settled_version = settled_version + ${OFFSET},
              settled_xmax = settled_xmax + ${OFFSET}, settled_xip = '{}' where table_name = 'items'`,
    );
    // The dump carried the agent's own state too: it remembers the old cluster's horizon.
    await local.query(`update tidemark.table_state set last_settled_version = last_settled_version + ${OFFSET}`);
    // Writes on the new cluster.
    await local.query(`update items set name = 'new cluster' where id in (1, 2, 3)`);
    await local.query(`insert into items values (501, 'new cluster'), (502, 'new cluster')`);

    const first = await agent.agent.tick({ checkCount: false });
    expect(first.tables[0]?.error).toBeUndefined();
    expect(first.converged).toBe(true);
    await same(local, server, reg.databaseId);
    const [{ future } = { future: -1 }] = await local.query<{ future: number }>(
      `select count(*)::int as future from items where tidemark_version >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint`,
    );
    expect(future).toBe(0);

    // From now on a run sends what changed, not the whole table again.
    await local.query(`update items set name = 'later' where id = 10`);
    const second = await agent.agent.tick({ checkCount: false });
    expect(second.tables[0]?.rowsUploaded).toBe(1);
    expect(second.converged).toBe(true);
    const third = await agent.agent.tick({ checkCount: false });
    expect(third.tables[0]?.rowsUploaded).toBe(0);
    await same(local, server, reg.databaseId);
  });

  it("notices a physical restore by the agent's own state going back, however far the xids moved on", async () => {
    const { local, server, reg, agent } = await syncedItems(100);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    await backUpThenChange(local, agent);

    await restoreBackup(local);
    // A busy database: its transaction ids pass the server's settled horizon before the agent runs.
    const summary = await agent.agent.remote.summary({ schema: 'public', name: 'items' });
    for (;;) {
      const [row] = await local.query<{ xmin: string }>(`select pg_snapshot_xmin(pg_current_snapshot())::text as xmin`);
      if (BigInt(row?.xmin ?? '0') > BigInt(summary.settledVersion) + 10n) break;
      await local.query(`select pg_current_xact_id()`);
    }

    const result = await agent.agent.tick({ checkCount: false });
    expect(result.tables[0]?.error).toBeUndefined();
    expect(result.converged).toBe(true);
    await same(local, server, reg.databaseId);
    expect(await local.query(`select full_verify_pending from tidemark.table_state`)).toEqual([{ full_verify_pending: false }]);
    // And the next run is an ordinary one.
    expect((await agent.agent.tick({ checkCount: false })).tables[0]?.diff).toBeUndefined();
  });

  it('notices a physical restore when a long transaction elsewhere in the cluster held the settled version still since the backup', async () => {
    // A transaction in another database of the cluster holds the oldest running id (the settled
    // version) still: the backup and the last run before the restore settle the same version.
    await using elsewhere = await createDatabase('local');
    const pin = new pg.Client({ connectionString: elsewhere.url });
    await pin.connect();
    await pin.query('begin');
    await pin.query('select pg_current_xact_id()');
    const { local, server, reg, agent } = await syncedItems(100);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    await backUpThenChange(local, agent);
    const [held] = await local.query<{ settled: string }>(`select last_settled_version::text as settled from tidemark.table_state`);
    expect(held?.settled).toBe((await local.query<{ settled: string }>(`select last_settled_version::text as settled from state_backup`))[0]?.settled);
    await pin.query('rollback');
    await pin.end();

    await restoreBackup(local);

    const result = await agent.agent.tick({ checkCount: false });
    expect(result.tables[0]?.error).toBeUndefined();
    expect(result.converged).toBe(true);
    await same(local, server, reg.databaseId);
  });

  it('stamps writes made with session_replication_role = replica, also on tables tracked before the trigger fired ALWAYS', async () => {
    const { local, server, reg, agent } = await syncedItems(20);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    // As an older tidemark left it: the trigger fires only in origin sessions.
    await local.query(`alter table items enable trigger tidemark_stamp_version`);
    // The next agent start upgrades it.
    await using restarted = await startTestAgent(local, server, reg);
    expect(await local.query(`select tgenabled::text as e from pg_trigger where tgname = 'tidemark_stamp_version'`)).toEqual([{ e: 'A' }]);
    // A logical-replication apply worker, or a restore tool, writes as a replica.
    await local.query(
      `begin; set local session_replication_role = replica;
       update items set name = 'replicated' where id = 5; insert into items values (21, 'replicated'); commit`,
    );
    const result = await restarted.agent.tick({ checkCount: false });
    expect(result.tables[0]?.rowsUploaded).toBe(2);
    expect(result.converged).toBe(true);
    await same(local, server, reg.databaseId);
  });
});
