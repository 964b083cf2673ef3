/**
 * Schema changes follow by themselves across a fleet on mixed versions (issue 8, item 1): one
 * replica table shared by tenants on different schema versions, each converging to its own local
 * rows through adds, drops and widenings; refusals stop one tenant's table only.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';

import type { RegisterResult } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';
import { seededRandom } from '../support/seeded-random.js';

type Site = { local: TestDatabase; reg: RegisterResult; agent: Awaited<ReturnType<typeof startTestAgent>> };

const V1 = `create table items (id int primary key, name text, qty integer, price numeric(10,2), code varchar(20))`;

async function site(server: TestServer, clientId: string, ddl = V1, rows = 50): Promise<Site & AsyncDisposable> {
  const local = await createDatabase('local');
  await local.query(ddl);
  await local.query(`insert into items (id, name, qty, price) select i, 'item ' || i, i, i * 1.25 from generate_series(1, $1::int) i`, [rows]);
  const reg = await server.register(clientId);
  const agent = await startTestAgent(local, server, reg);
  await agent.local.tracking.track('items');
  return {
    local,
    reg,
    agent,
    async [Symbol.asyncDispose]() {
      await agent[Symbol.asyncDispose]();
      await local[Symbol.asyncDispose]();
    },
  };
}

/**
 * This tenant's rows on the replica, over its local columns read as its local types (a column the
 * union widened reads back as the tenant declares it), next to its local rows.
 */
async function compare(server: TestServer, s: Site): Promise<{ remote: string[]; local: string[] }> {
  const cols = await s.local.query<{ attname: string; type: string }>(
    `select attname, format_type(atttypid, atttypmod) as type from pg_attribute where attrelid = 'items'::regclass and attnum > 0 and not attisdropped order by attname`,
  );
  const list = (cast: boolean) =>
    cols.map((c) => `${pg.escapeIdentifier(c.attname)}${cast ? `::${c.type}` : ''}::text as ${pg.escapeIdentifier(c.attname)}`).join(', ');
  const dump = async (db: TestDatabase, sql: string, params: unknown[] = []) => (await db.query(sql, params)).map((r) => JSON.stringify(r)).sort();
  return {
    remote: await dump(server.db, `select ${list(true)} from public.items where tidemark_database_id = $1::uuid`, [s.reg.databaseId]),
    local: await dump(s.local, `select ${list(false)} from public.items`),
  };
}

async function converges(server: TestServer, s: Site): Promise<void> {
  const tick = await s.agent.agent.tick({ checkCount: true });
  expect(tick.tables[0]?.error, JSON.stringify(tick.tables[0]?.error)).toBeUndefined();
  expect(tick.converged).toBe(true);
  const { remote, local } = await compare(server, s);
  expect(remote).toEqual(local);
}

/** A whole-table comparison (verify --dry-run) finds nothing different. */
async function verifiesEqual(s: Site): Promise<void> {
  const [r] = await s.agent.agent.verify({ dryRun: true });
  expect(r?.error).toBeUndefined();
  expect(r?.diff && r.diff.missing.length + r.diff.changed.length + r.diff.extra.length).toBe(0);
}

describe('schema evolution of a shared replica table', () => {
  it('adds a column for one tenant while another, on the old version, keeps syncing', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await using b = await site(server, 'beta');
    await converges(server, a);
    await converges(server, b);
    await a.local.query(`alter table items add column region text`);
    await a.local.query(`update items set region = 'eu' where id % 2 = 0`);
    await converges(server, a);
    await b.local.query(`update items set name = 'renamed' where id < 5`);
    await converges(server, b);
    expect(await server.db.query(`select count(*)::int as n from public.items where region is not null`)).toEqual([{ n: 25 }]);
    const [shape] = await server.db.query<{ columns: { name: string }[] }>(`select columns from tidemark.replica_table`);
    expect(shape?.columns.map((c) => c.name)).toContain('region');
    await verifiesEqual(a);
    await verifiesEqual(b);
    // Status shows the change and when it was applied; the other tenant's table never changed.
    const [sa] = await a.agent.agent.status();
    expect(sa?.remote?.schema).toEqual(expect.objectContaining({ state: 'in_sync', changedAt: expect.any(String), appliedAt: expect.any(String) }));
    expect((await b.agent.agent.status())[0]?.remote?.schema).toEqual(expect.objectContaining({ state: 'in_sync', changedAt: null }));
  });

  it('an unchanged declaration takes no lock and runs no DDL check (the idle run)', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await converges(server, a);
    // Another session holds the table's declaration lock: an unchanged declaration must not wait for it.
    const holder = await server.db.pool.connect();
    try {
      await holder.query(`select pg_advisory_lock(hashtext('tidemark.declare'), hashtext('public.items'))`);
      // pg_locks is the cluster's: count this server database's locks only (other test files run agents beside).
      const advisory = `select count(*)::text as n from pg_locks where locktype = 'advisory' and granted and database = (select oid from pg_database where datname = current_database())`;
      const before = await server.db.query<{ n: string }>(advisory);
      const tick = await a.agent.agent.tick();
      expect(tick.tables[0]?.error).toBeUndefined();
      expect(await server.db.query<{ n: string }>(advisory)).toEqual(before);
    } finally {
      await holder.query(`select pg_advisory_unlock_all()`);
      holder.release();
    }
  });

  it('a column added with a constant default reaches the replica without re-sending the table', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await converges(server, a);
    await a.local.query(`alter table items add column status text not null default 'new', add column born timestamptz default now()`);
    const tick = await a.agent.agent.tick();
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.tables[0]?.rowsUploaded).toBe(0);
    const { remote, local } = await compare(server, a);
    expect(remote).toEqual(local);
    await verifiesEqual(a);
  });

  it('a column added with a volatile default is repaired by a whole-table comparison', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await converges(server, a);
    await a.local.query(`alter table items add column token text default md5(random()::text)`);
    const tick = await a.agent.agent.tick();
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.tables[0]?.rowsUploaded).toBe(50);
    const { remote, local } = await compare(server, a);
    expect(remote).toEqual(local);
    // Once repaired, the next run sends nothing.
    expect((await a.agent.agent.tick()).tables[0]?.rowsUploaded).toBe(0);
  });

  it('a dropped column stops being carried for that tenant, and the replica keeps or drops it by policy', async () => {
    for (const policy of ['keep', 'drop'] as const) {
      await using server = await startTestServer({ replicaDroppedColumns: policy });
      await using a = await site(server, 'alpha');
      await using b = await site(server, 'beta');
      await converges(server, a);
      await converges(server, b);
      await a.local.query(`alter table items drop column qty`);
      await converges(server, a);
      expect(
        await server.db.query(`select count(*)::int as n from public.items where tidemark_database_id = $1::uuid and qty is not null`, [a.reg.databaseId]),
      ).toEqual([{ n: 0 }]);
      // b still declares qty: its values stay.
      expect(
        await server.db.query(`select count(*)::int as n from public.items where tidemark_database_id = $1::uuid and qty is not null`, [b.reg.databaseId]),
      ).toEqual([{ n: 50 }]);
      await b.local.query(`alter table items drop column qty`);
      await converges(server, b);
      const still = await server.db.query(`select 1 from pg_attribute where attrelid = 'public.items'::regclass and attname = 'qty' and not attisdropped`);
      expect(still.length, policy).toBe(policy === 'keep' ? 1 : 0);
      await converges(server, a);
      await verifiesEqual(a);
    }
  });

  it('widens the replica; a tenant still on the narrower types verifies equal', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await using b = await site(server, 'beta');
    await converges(server, a);
    await converges(server, b);
    await a.local.query(`alter table items alter column qty type bigint, alter column price type numeric(14,4), alter column code type varchar(40)`);
    await a.local.query(`update items set qty = 10000000000, price = 1.2345 where id = 1`);
    await converges(server, a);
    expect(
      await server.db.query(
        `select format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = 'public.items'::regclass and attname in ('qty', 'price') order by attname`,
      ),
    ).toEqual([{ t: 'numeric(14,4)' }, { t: 'bigint' }]);
    await b.local.query(`update items set price = 99.99 where id = 2`);
    await converges(server, b);
    await verifiesEqual(b);
    await verifiesEqual(a);
  });

  it('a narrowing stops that table for that tenant only, naming its own column and the remedy', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await using b = await site(server, 'beta');
    await converges(server, a);
    await converges(server, b);
    await a.local.query(`alter table items alter column price type numeric(8,1)`);
    const blocked = await a.agent.agent.tick();
    expect(blocked.tables[0]?.error?.code).toBe('TM_REPLICA_SCHEMA_MISMATCH');
    expect(blocked.tables[0]?.error?.message).toMatch(/column price changed from numeric\(10,2\) to numeric\(8,1\).*restore numeric\(10,2\)/);
    const [status] = await a.agent.agent.status();
    expect(status?.remote?.schema?.state).toBe('blocked');
    expect(status?.remote?.schema?.reason).toMatch(/price/);
    // The other tenant keeps syncing.
    await b.local.query(`insert into items (id, name) values (1000, 'new')`);
    await converges(server, b);
    // Restoring the type locally unblocks it.
    await a.local.query(`alter table items alter column price type numeric(10,2)`);
    await a.agent.agent.tick({ verifyAll: true });
    await converges(server, a);
    expect((await a.agent.agent.status())[0]?.remote?.schema?.state).toBe('in_sync');
  });

  it('a key change blocks that tenant with its rows kept on the replica', async () => {
    await using server = await startTestServer();
    await using a = await site(server, 'alpha');
    await converges(server, a);
    await a.local.query(`alter table items drop constraint items_pkey, add primary key (id, name)`);
    const tick = await a.agent.agent.tick();
    expect(tick.tables[0]?.error?.code).toBe('TM_REPLICA_SCHEMA_MISMATCH');
    expect(tick.tables[0]?.error?.message).toMatch(/primary key of public.items changed locally to \(id integer, name text\)/);
    expect(await server.db.query(`select count(*)::int as n from public.items`)).toEqual([{ n: 50 }]);
  });

  it('two tenants on different schema versions converge through several random upgrades', async () => {
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Date.now() % 100000);
    console.log(`schema evolution seed: ${seed} (replay with TIDEMARK_TEST_SEED=${seed})`);
    const random = seededRandom(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    await using server = await startTestServer();
    const sites = [await site(server, 'alpha'), await site(server, 'beta')];
    try {
      for (const s of sites) await converges(server, s);
      // Each site walks its own upgrade path; the other lags behind or moves ahead.
      const steps = [
        `alter table items add column c1 varchar(100)`,
        `alter table items add column c2 integer default 7`,
        `alter table items alter column qty type bigint`,
        `alter table items alter column price type numeric(12,3)`,
        `alter table items add column c3 timestamptz default clock_timestamp()`,
        `alter table items drop column name`,
        `alter table items alter column c1 type varchar(300)`,
      ];
      const next = sites.map(() => 0);
      for (let round = 0; round < 8; round++) {
        const i = Math.floor(random() * sites.length);
        const s = sites[i] as Site;
        const step = next[i] as number;
        if (step < steps.length && random() < 0.7) {
          await s.local.query(steps[step] as string);
          next[i] = step + 1;
        }
        const id = 1 + Math.floor(random() * 50);
        await s.local.query(
          pick([
            `update items set qty = qty + 1 where id = ${id}`,
            `delete from items where id = ${id}`,
            `insert into items (id) values (${1000 + round}) on conflict do nothing`,
          ]),
        );
        for (const t of sites) await converges(server, t);
      }
      for (const s of sites) await verifiesEqual(s);
    } finally {
      for (const s of sites) await s[Symbol.asyncDispose]();
    }
  });
});
