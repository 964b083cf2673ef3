/**
 * Skip-ahead end to end: rows the server cannot take are quarantined in the local tidemark schema
 * with the server's error, the rest of the table syncs, and quarantined rows are retried with backoff
 * until they go through. No row is silently dropped.
 */
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestDatabase } from '../support/fixtures.js';

interface QuarantineRow {
  key: string[];
  attempts: number;
  due_in_seconds: number;
}

async function quarantine(local: TestDatabase): Promise<QuarantineRow[]> {
  return local.query<QuarantineRow>(
    `select key_text as key, attempts, extract(epoch from next_retry_at - now())::float8 as due_in_seconds from tidemark.quarantine order by key_text`,
  );
}

/** items(id, qty) with 1000 rows, synced once; the server then refuses negative quantities (only there). */
async function setUp(local: TestDatabase, server: Awaited<ReturnType<typeof startTestServer>>) {
  await local.query(`create table items (id int primary key, qty int not null)`);
  await local.query(`insert into items select i, i from generate_series(1, 1000) i`);
  const reg = await server.register('acme');
  return reg;
}

describe('skip-ahead and quarantine', () => {
  it('quarantines a row the replica rejects, syncs the rest, and releases the row once it is fixed locally', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 0.01 } });
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);

    // A constraint only the replica has: the server rejects the row, the local database keeps it.
    await server.db.query(`alter table public.items add constraint qty_not_negative check (qty >= 0) not valid`);
    await local.query(`update items set qty = qty + 1000 where id <= 500`);
    await local.query(`update items set qty = -5 where id = 250`);

    const second = await agent.agent.tick();
    const t2 = second.tables[0];
    expect(t2?.error).toBeUndefined();
    expect(second.converged).toBe(false);
    expect(t2?.quarantined).toBe(1);
    // Every other row is on the server; the bad one keeps its last good state there.
    expect(await dumpRows(server.db, 'public.items', { where: 'id <> 250' })).toEqual(await dumpRows(local, 'public.items', { where: 'id <> 250' }));
    expect(await server.db.query(`select qty from items where id = 250`)).toEqual([{ qty: 250 }]);
    const [status] = await agent.agent.status();
    expect(status?.quarantined).toHaveLength(1);
    expect(status?.quarantined[0]?.key).toEqual(['250']);
    expect(status?.quarantined[0]?.error).toMatch(/^TM_UPLOAD_REJECTED: .*qty_not_negative/);
    expect(await agent.metrics.skipAheads.get()).toMatchObject({ values: [{ value: 1 }] });
    expect((await agent.metrics.quarantinedRows.get()).values[0]?.value).toBe(1);

    // Still bad: retried (its backoff is short here) and quarantined again, one more attempt.
    await new Promise((r) => setTimeout(r, 50));
    const third = await agent.agent.tick();
    expect(third.converged).toBe(false);
    expect((await quarantine(local)).map((q) => [q.key, q.attempts])).toEqual([[['250'], 2]]);

    // Fixed locally: the next run sends it, and it leaves quarantine.
    await local.query(`update items set qty = 7 where id = 250`);
    await new Promise((r) => setTimeout(r, 50));
    const fourth = await agent.agent.tick({ checkCount: true });
    expect(fourth.tables[0]?.error).toBeUndefined();
    expect(fourth.converged).toBe(true);
    expect(await quarantine(local)).toEqual([]);
    expect((await agent.agent.status())[0]?.quarantined).toEqual([]);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('retries a quarantined row only when its backoff is due, doubling the wait each time', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 1, retryMaxSeconds: 60 } });
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    await server.db.query(`alter table public.items add constraint qty_not_negative check (qty >= 0) not valid`);
    await local.query(`update items set qty = -1 where id = 10`);

    await agent.agent.tick();
    const [first] = await quarantine(local);
    expect(first?.attempts).toBe(1);
    expect(first?.due_in_seconds).toBeGreaterThan(0.5);
    expect(first?.due_in_seconds).toBeLessThanOrEqual(1);

    // Not due yet: the run leaves it alone.
    await agent.agent.tick();
    expect((await quarantine(local))[0]?.attempts).toBe(1);

    // Due: retried, rejected again, and the next wait is twice as long.
    await new Promise((r) => setTimeout(r, 1100));
    const t = await agent.agent.tick();
    expect(t.converged).toBe(false);
    const [second] = await quarantine(local);
    expect(second?.attempts).toBe(2);
    expect(second?.due_in_seconds).toBeGreaterThan(1.5);
    expect(second?.due_in_seconds).toBeLessThanOrEqual(2);
  });

  it('retries a quarantined row as soon as it changes locally, without waiting for its backoff', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 3600, retryMaxSeconds: 3600 } });
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    await server.db.query(`alter table public.items add constraint qty_not_negative check (qty >= 0) not valid`);
    await local.query(`update items set qty = -1 where id = 9`);
    expect((await agent.agent.tick()).converged).toBe(false);
    expect((await quarantine(local)).map((q) => q.key)).toEqual([['9']]);
    // Unchanged, it waits for its hour.
    expect((await agent.agent.tick()).converged).toBe(false);
    expect((await quarantine(local))[0]?.attempts).toBe(1);
    // Fixed locally, it goes at once.
    await local.query(`update items set qty = 9 where id = 9`);
    const fixed = await agent.agent.tick({ checkCount: true });
    expect(fixed.converged).toBe(true);
    expect(await quarantine(local)).toEqual([]);
    expect(await server.db.query(`select qty from items where id = 9`)).toEqual([{ qty: 9 }]);
  });

  it('skips ahead a row larger than the server accepts and syncs the rows around it', async () => {
    await using local = await createDatabase('local');
    // 8 KiB bodies at most: below the agent's smallest batch (16 KiB), so every batch is cut smaller.
    await using server = await startTestServer({ maxBodyBytes: 8 * 1024 });
    await local.query(`create table items (id int primary key, note text not null)`);
    await local.query(`insert into items select i, 'note ' || i from generate_series(1, 500) i`);
    await local.query(`update items set note = repeat('x', 20000) where id = 123`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 0.01 } });
    await agent.local.tracking.track('items');

    const first = await agent.agent.tick({ checkCount: true });
    expect(first.tables[0]?.error).toBeUndefined();
    expect(first.converged).toBe(false);
    const [status] = await agent.agent.status();
    expect(status?.quarantined.map((q) => q.key)).toEqual([['123']]);
    expect(status?.quarantined[0]?.error).toMatch(/^TM_PAYLOAD_TOO_LARGE: /);
    expect(await server.db.query(`select count(*)::int as n from items`)).toEqual([{ n: 499 }]);

    await local.query(`update items set note = 'short again' where id = 123`);
    await new Promise((r) => setTimeout(r, 50));
    const second = await agent.agent.tick({ checkCount: true });
    expect(second.converged).toBe(true);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('quarantines a row the server fails on (5xx) once the rows after it go through', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 0.01 } });
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    // The replica fails on one row with an error that is not about the data (53100: disk full): a 500.
    await server.db.query(`create function boom() returns trigger language plpgsql as $$
      begin raise exception 'no space left for row %', new.id using errcode = '53100'; end $$`);
    await server.db.query(`create trigger boom before insert or update on public.items for each row when (new.id = 600) execute function boom()`);
    await local.query(`update items set qty = qty + 1`);

    const t = await agent.agent.tick();
    expect(t.tables[0]?.error).toBeUndefined();
    expect(t.converged).toBe(false);
    const [status] = await agent.agent.status();
    expect(status?.quarantined.map((q) => q.key)).toEqual([['600']]);
    expect(status?.quarantined[0]?.error).toMatch(/^TM_SERVER_UNAVAILABLE: server error 500/);
    expect(await dumpRows(server.db, 'public.items', { where: 'id <> 600' })).toEqual(await dumpRows(local, 'public.items', { where: 'id <> 600' }));

    await server.db.query(`drop trigger boom on public.items`);
    await new Promise((r) => setTimeout(r, 50));
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    expect(await quarantine(local)).toEqual([]);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('fails the run and quarantines nothing when the server fails every batch', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 0.01 } });
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    await server.db.query(`create function boom() returns trigger language plpgsql as $$
      begin raise exception 'no space left' using errcode = '53100'; end $$`);
    await server.db.query(`create trigger boom before insert or update on public.items for each row execute function boom()`);
    await local.query(`update items set qty = qty + 1 where id > 900`);

    const t = await agent.agent.tick();
    expect(t.converged).toBe(false);
    expect(t.tables[0]?.error?.code).toBe('TM_SERVER_UNAVAILABLE');
    expect(await quarantine(local)).toEqual([]);

    await server.db.query(`drop trigger boom on public.items`);
    const after = await agent.agent.tick({ checkCount: true });
    expect(after.converged).toBe(true);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('releases a quarantined row that was deleted locally, and removes it from the server', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const reg = await setUp(local, server);
    await using agent = await startTestAgent(local, server, reg, { quarantine: { retryBaseSeconds: 0.01 } });
    await agent.local.tracking.track('items');
    await agent.agent.tick();
    await server.db.query(`alter table public.items add constraint qty_not_negative check (qty >= 0) not valid`);
    await local.query(`update items set qty = -1 where id = 42`);
    await agent.agent.tick();
    expect((await quarantine(local)).map((q) => q.key)).toEqual([['42']]);

    await local.query(`delete from items where id = 42`);
    await new Promise((r) => setTimeout(r, 50));
    const t = await agent.agent.tick({ checkCount: true });
    expect(t.converged).toBe(true);
    expect(await quarantine(local)).toEqual([]);
    expect(await server.db.query(`select count(*)::int as n from items where id = 42`)).toEqual([{ n: 0 }]);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });
});
