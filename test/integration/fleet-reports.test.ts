/**
 * Agents report, the server knows: a real agent's ticks against a real server, and what the admin
 * fleet API then says. One report per tick at most, only with news or when the heartbeat is due
 * (the agent's injected clock decides, never the wall clock).
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { HEARTBEAT_SECONDS } from '../../src/agent/run-report.js';
import { adminRequest } from '../../src/cli/admin-client.js';
import { adminPaths, type FleetDetail, fleetDetailSchema, fleetListSchema } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer, type TestServer } from '../support/fixtures.js';

async function fleet(server: TestServer) {
  return (await adminRequest(server.url, server.adminKey, 'GET', adminPaths.fleet(), undefined, fleetListSchema)).databases;
}

async function detail(server: TestServer, clientId: string, databaseId: string): Promise<FleetDetail> {
  return adminRequest(server.url, server.adminKey, 'GET', adminPaths.detail(clientId, databaseId), undefined, fleetDetailSchema);
}

async function runsStored(server: TestServer): Promise<number> {
  return (await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.run_report`))[0]?.n ?? -1;
}

describe('run reports', () => {
  it('tell the server each tick that has news, and a heartbeat when nothing changed', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 50) i`);
    await local.query(`create table orders (id int primary key)`);
    const reg = await server.register('acme', 'Lyon');
    let now = Date.parse('2026-01-01T00:00:00Z');
    await using agent = await startTestAgent(local, server, reg, {}, { now: () => now });
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('orders');
    expect((await fleet(server))[0]).toMatchObject({ state: 'never' });

    // 1. The first tick moves rows: a report.
    expect((await agent.agent.tick()).converged).toBe(true);
    expect(await runsStored(server)).toBe(1);
    const [db] = await fleet(server);
    expect(db).toMatchObject({
      clientId: 'acme',
      databaseId: reg.databaseId,
      state: 'ok',
      agentVersion: '0.1.0',
      tables: 2,
      lagSeconds: 0,
      quarantinedRows: 0,
    });
    expect(db?.lastReportAt).toEqual(db?.lastSuccessAt);
    const first = await detail(server, 'acme', reg.databaseId);
    expect(first.tables.map((t) => [t.table, t.lastOutcome, t.remoteCount])).toEqual([
      ['public.items', 'ok', 50],
      ['public.orders', 'ok', 0],
    ]);
    expect(first.tables[0]?.localMaxVersion).toEqual(first.tables[0]?.remoteMaxVersion);
    expect(first.runs).toEqual([
      expect.objectContaining({
        outcome: 'ok',
        tables: [
          { table: 'public.items', outcome: 'ok', errorCode: null, rowsUploaded: 50, rowsDeleted: 0 },
          { table: 'public.orders', outcome: 'ok', errorCode: null, rowsUploaded: 0, rowsDeleted: 0 },
        ],
      }),
    ]);

    // 2. Nothing changed: no request.
    await agent.agent.tick();
    expect(await runsStored(server)).toBe(1);

    // 3. The heartbeat is due: one report, though nothing changed.
    now += HEARTBEAT_SECONDS * 1000;
    await agent.agent.tick();
    expect(await runsStored(server)).toBe(2);

    // 4. Rows moved: a report.
    await local.query(`insert into orders values (1), (2)`);
    await agent.agent.tick();
    expect(await runsStored(server)).toBe(3);
    expect((await detail(server, 'acme', reg.databaseId)).runs[0]?.tables[1]).toMatchObject({ table: 'public.orders', rowsUploaded: 2 });
  });

  it('forget a table the agent no longer syncs, so a table untracked while failing does not fail its database for ever', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`create table drifted (id int primary key)`);
    await server.db.query(`create table public.drifted (id int primary key)`); // not tidemark's: its runs fail
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('drifted');
    await agent.agent.tick();
    expect((await fleet(server))[0]).toMatchObject({ state: 'error', errorCode: 'TM_REPLICA_NOT_ADMITTED' });

    // A run of some tables only says nothing of the others.
    await agent.agent.tick({ tables: [{ schema: 'public', name: 'items' }] });
    expect((await detail(server, 'acme', reg.databaseId)).tables.map((t) => t.table)).toEqual(['public.drifted', 'public.items']);

    await agent.local.tracking.untrack('drifted');
    await agent.agent.tick();
    expect((await fleet(server))[0]).toMatchObject({ state: 'ok', errorCode: null });
    expect((await detail(server, 'acme', reg.databaseId)).tables.map((t) => [t.table, t.lastOutcome])).toEqual([['public.items', 'ok']]);

    // The last table untracked: the next tick says so, with no table.
    await agent.local.tracking.untrack('items');
    await agent.agent.tick();
    const reported = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.table_report`);
    expect(reported).toEqual([{ n: 0 }]);
  });

  it('carry quarantined rows, errors with the schema blocked, and a horizon held back by an open transaction', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 20) i`);
    // A table of that name already exists on the server, not made by tidemark: its runs fail.
    await local.query(`create table drifted (id int primary key)`);
    await server.db.query(`create table public.drifted (id int primary key)`);
    const reg = await server.register('acme');
    let now = Date.parse('2026-01-01T00:00:00Z');
    await using agent = await startTestAgent(local, server, reg, {}, { now: () => now });
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('drifted');

    await agent.agent.tick();
    let [db] = await fleet(server);
    expect(db).toMatchObject({ state: 'error', errorCode: 'TM_REPLICA_NOT_ADMITTED' });
    expect(db?.lastSuccessAt).toBeNull();
    const drifted = (await detail(server, 'acme', reg.databaseId)).tables.find((t) => t.table === 'public.drifted');
    expect(drifted).toMatchObject({ lastOutcome: 'error', errorCode: 'TM_REPLICA_NOT_ADMITTED', schemaState: { state: 'blocked', at: expect.any(String) } });
    expect(drifted?.errorMessage).toMatch(/\S/);

    // The replica refuses a row: quarantined, with its key and the server's error in the detail.
    // (From here on, the agent runs only items; drifted's last report is forgotten below.)
    await server.db.query(`alter table public.items add constraint no_777 check (id <> 777)`);
    await local.query(`insert into items values (777, 'refused by the replica')`);
    await agent.agent.tick({ tables: [{ schema: 'public', name: 'items' }] });
    const items = (await detail(server, 'acme', reg.databaseId)).tables.find((t) => t.table === 'public.items');
    expect(items?.quarantined).toEqual([{ key: ['777'], error: expect.stringMatching(/no_777/), attempts: expect.any(Number) }]);
    await server.db.query(`delete from tidemark.table_report where table_name = 'drifted'`);
    [db] = await fleet(server);
    expect(db).toMatchObject({ state: 'quarantine', quarantinedRows: 1 });

    // A transaction open in another database of the cluster (another application, or a concurrent
    // test: CI met it) cannot write the tracked tables: it is not what holds this database back.
    await using elsewhere = await createDatabase('local');
    const other = new pg.Client({ connectionString: elsewhere.url });
    other.on('error', () => {});
    await other.connect();
    await other.query(`begin`);
    await other.query(`select pg_current_xact_id()`);
    // A transaction that wrote and stays open holds the local horizon back: its age grows tick after tick.
    const holder = new pg.Client({ connectionString: local.url });
    await holder.connect();
    try {
      await holder.query(`begin`);
      await holder.query(`insert into items values (9001, 'in flight')`);
      await agent.agent.tick({ tables: [{ schema: 'public', name: 'items' }] });
      now += 3 * 3600 * 1000; // 3 hours later by the agent's clock (and a heartbeat due)
      await agent.agent.tick({ tables: [{ schema: 'public', name: 'items' }] });
      const age = await server.db.query<{ horizon_age_seconds: number }>(`select horizon_age_seconds from tidemark.agent_report`);
      expect(age[0]?.horizon_age_seconds).toBe(3 * 3600);
    } finally {
      await holder.query(`rollback`);
      await holder.end();
    }
    now += HEARTBEAT_SECONDS * 1000;
    await agent.agent.tick({ tables: [{ schema: 'public', name: 'items' }] });
    const after = await server.db.query<{ horizon_age_seconds: number }>(`select horizon_age_seconds from tidemark.agent_report`);
    expect(after[0]?.horizon_age_seconds).toBe(0);
    await other.query(`rollback`);
    await other.end();
  });
});
