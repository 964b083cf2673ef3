import { describe, expect, it } from 'vitest';

import { adminRequest } from '../../src/cli/admin-client.js';
import type { TenantInfo } from '../../src/shared/protocol.js';
import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';

async function syncedTable(rows: number) {
  const local = await createDatabase('local');
  const server = await startTestServer();
  await local.query(`create table items (id int primary key, name text not null, qty int not null)`);
  await local.query(`insert into items select i, 'item ' || i, i % 97 from generate_series(1, ${rows}) i`);
  const reg = await server.register('acme');
  const agent = await startTestAgent(local, server, reg);
  await agent.local.tracking.track('items');
  expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
  return { local, server, reg, agent };
}

/** Corrupts the replica every way: rows deleted, extra rows, content edited in place, versions altered. */
async function corrupt(server: TestServer, databaseId: string): Promise<void> {
  const tenant = `tidemark_client_id = 'acme' and tidemark_database_id = '${databaseId}'`;
  await server.db.query(`delete from items where ${tenant} and id in (10, 2000, 3999)`);
  await server.db.query(`insert into items select 'acme', '${databaseId}', 7, 100000 + i, 'ghost', 0 from generate_series(1, 4) i`);
  await server.db.query(`update items set name = 'tampered' where ${tenant} and id in (5, 1234)`);
  await server.db.query(`update items set tidemark_version = tidemark_version + 1 where ${tenant} and id = 3000`);
}

const same = async (local: TestDatabase, server: TestServer, databaseId: string) =>
  expect(await dumpRows(server.db, 'public.items', { where: `tidemark_database_id = '${databaseId}'` })).toEqual(await dumpRows(local, 'public.items'));

describe('verification and forced resync', () => {
  it('reports an identical table as identical, in one round trip', async () => {
    const { local, server, agent } = await syncedTable(5000);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    const [r] = await agent.agent.verify({ dryRun: true });
    expect(r?.error).toBeUndefined();
    expect(r?.converged).toBe(true);
    expect(r?.diff).toMatchObject({ missing: [], extra: [], changed: [], rowsCompared: 0, roundTrips: 1 });
  });

  it('finds every kind of corruption, touching only the differing ranges, and repairs it', async () => {
    const { local, server, reg, agent } = await syncedTable(4000);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    await corrupt(server, reg.databaseId);

    const [dry] = await agent.agent.verify({ dryRun: true });
    const d = dry?.diff;
    expect(d?.missing.map((k) => k[0]).sort()).toEqual(['10', '2000', '3999']);
    expect(d?.extra.map((e) => e.key[0]).sort()).toEqual(['100001', '100002', '100003', '100004']);
    expect(d?.changed.map((k) => k[0]).sort()).toEqual(['1234', '3000', '5']);
    // Bisection: 10 differing rows among 4000 are named after comparing a few hundred rows, not thousands.
    expect(d?.rowsCompared).toBeLessThan(1200);
    expect(dry?.converged).toBe(false);
    // A dry run changes nothing.
    expect(await server.db.query(`select count(*)::int as n from items where name = 'tampered'`)).toEqual([{ n: 2 }]);

    const [fixed] = await agent.agent.verify({ dryRun: false });
    expect(fixed?.error).toBeUndefined();
    await same(local, server, reg.databaseId);
    // The server's O(1) figures were refreshed from its rows.
    const summary = await agent.agent.remote.summary({ schema: 'public', name: 'items' });
    expect(summary.rowCount).toBe(4000);
    const [again] = await agent.agent.verify({ dryRun: true });
    expect(again?.converged).toBe(true);
  });

  it("hashes rows with their types' hash functions, and falls back to their text for types without one", async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    // point has no hash function: hash_record_extended cannot hash it.
    await local.query(`create table shapes (id int primary key, at point, label text)`);
    await local.query(`insert into shapes select i, point(i, -i), 'p' || i from generate_series(1, 300) i`);
    await local.query(`create table plain (id int primary key, label text)`);
    await local.query(`insert into plain select i, 'p' || i from generate_series(1, 300) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('shapes');
    await agent.local.tracking.track('plain');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    await server.db.query(`update shapes set at = point(0, 0) where id = 17`);
    await server.db.query(`update plain set label = 'edited' where id = 17`);
    const results = await agent.agent.verify({ dryRun: true });
    const byTable = new Map(results.map((r) => [r.table, r.diff]));
    expect(byTable.get('public.shapes')).toMatchObject({ hashKind: 'text', changed: [['17']] });
    expect(byTable.get('public.plain')).toMatchObject({ hashKind: 'record', changed: [['17']] });
  });

  it('runs a resync requested by an admin on the next run, keeping the replica readable, and reports it done', async () => {
    const { local, server, reg, agent } = await syncedTable(4000);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    await corrupt(server, reg.databaseId);
    const requested = await adminRequest<{ tables: string[] }>(
      server.url,
      server.adminKey,
      'POST',
      `/v1/admin/customers/acme/databases/${reg.databaseId}/resync`,
      {},
    );
    expect(requested.tables).toEqual(['public.items']);
    const before = await adminRequest<TenantInfo>(server.url, server.adminKey, 'GET', `/v1/admin/customers/acme/databases/${reg.databaseId}`);
    expect(before.tables[0]?.resync?.status).toBe('requested');

    // Watch the replica while the resync runs: never empty, never half-empty.
    let minRows = Number.POSITIVE_INFINITY;
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const [row] = await server.db.query<{ n: number }>(`select count(*)::int as n from items where tidemark_database_id = '${reg.databaseId}'`);
        minRows = Math.min(minRows, row?.n ?? 0);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    const tick = await agent.agent.tick();
    watching = false;
    await watcher;
    expect(tick.converged).toBe(true);
    expect(minRows).toBeGreaterThanOrEqual(3997);
    await same(local, server, reg.databaseId);

    const after = await adminRequest<TenantInfo>(server.url, server.adminKey, 'GET', `/v1/admin/customers/acme/databases/${reg.databaseId}`);
    expect(after.tables[0]?.resync).toMatchObject({ status: 'done', progress: 1, rowsRepaired: 10 });
    expect(after.tables[0]?.resync?.finishedAt).toBeTruthy();
    const [status] = await agent.agent.status();
    expect(status?.remote?.resync?.status).toBe('done');
    // Done means done: the next run does not resync again.
    const next = await agent.agent.tick();
    expect(next.tables[0]?.diff).toBeUndefined();
  });

  it('verifies a slice of the table each run (rolling verification), resuming after a restart', async () => {
    const { local, server, reg, agent } = await syncedTable(3000);
    await using _l = local;
    await using _s = server;
    await using _a = agent;
    await server.db.query(`update items set name = 'tampered' where id = 2900`);
    // A pass per 1.25 hours of 3000 rows owes a slice of 1000 rows every 25 minutes (the first at
    // once): the agent's clock moves 25 minutes between runs.
    let clock = Date.parse('2026-01-01T00:00:00Z');
    await using rolling = await startTestAgent(local, server, reg, { verification: { periodHours: 1.25 } }, { now: () => clock });
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      if (i > 0) clock += 25 * 60_000;
      const r = await rolling.agent.tick();
      runs.push(r.tables[0]?.diff?.changed.length ?? 0);
      const [p] = await local.query<{ done: string }>(`select verify_rows_done::text as done from tidemark.table_state`);
      if (i === 0) expect(p?.done).toBe('1000');
    }
    // The third slice holds id 2900; the pass then starts over.
    expect(runs).toEqual([0, 0, 1]);
    expect(await server.db.query(`select name from items where id = 2900`)).toEqual([{ name: 'item 2900' }]);
    const progress = await rolling.metrics.registry.getSingleMetricAsString('tidemark_agent_verification_progress_ratio');
    expect(progress).toMatch(/table="public.items"} 1/);
  });
});
