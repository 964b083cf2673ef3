import { describe, expect, it } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';

/** Enums and extension types are replicated only where the admin admits them (docs/security.md). */
const ADMITTED = ['public.mood', 'public.citext'];

const CI = `create collation ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)`;

/** Server rows' (key, xmin): a row rewritten by an upload gets a new xmin. */
async function rowVersions(server: TestServer, table: string): Promise<unknown[]> {
  return server.db.query(`select id::text, xmin::text from ${table} order by id`);
}

describe('row hashes follow the canonical text on both sides', () => {
  it('an enum column and a nondeterministic collation: identical after a sync, and verifications re-upload nothing', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    // Different enum OIDs on each side: a dummy enum first on the server.
    await server.db.query(`create type dummy as enum ('x'); create type mood as enum ('sad', 'ok', 'happy'); ${CI}`);
    await local.query(`create type mood as enum ('sad', 'ok', 'happy'); ${CI}`);
    const oid = `select 'mood'::regtype::oid::int as oid`;
    expect((await local.query(oid))[0]?.oid).not.toEqual((await server.db.query(oid))[0]?.oid);
    await local.query(`create table feelings (id int primary key, feeling mood not null)`);
    await local.query(`insert into feelings select i, (array['sad','ok','happy']::mood[])[1 + i % 3] from generate_series(1, 300) i`);
    await local.query(`create table things (id int primary key, name text collate ci, tag varchar(20) collate ci)`);
    await local.query(`insert into things select i, case when i % 2 = 0 then 'Name ' || i else 'NAME ' || i end, 'T' || i from generate_series(1, 300) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('feelings');
    await agent.local.tracking.track('things');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);

    const dry = await agent.agent.verify({ dryRun: true });
    for (const r of dry) {
      expect(r.error, r.table).toBeUndefined();
      // Enums are hashed by their text; text under any collation by its bytes (record hashing).
      expect(r.diff, r.table).toMatchObject({ missing: [], extra: [], changed: [], hashKind: r.table === 'public.feelings' ? 'text' : 'record' });
      expect(r.converged, r.table).toBe(true);
    }

    // A server asked for record hashes of an enum (an agent of an older version) refuses, and the agent hashes text.
    const request = { mode: 'hash', range: { lower: null, upper: null }, level: 'summary', hashKind: 'record' } as const;
    await expect(agent.agent.remote.manifest({ schema: 'public', name: 'feelings' }, request)).rejects.toMatchObject({
      code: 'TM_COLUMN_TYPE_UNSUPPORTED',
    });

    // The replica columns keep the local collation.
    const colls = await server.db.query(
      `select a.attname, c.collname from pg_attribute a join pg_collation c on c.oid = a.attcollation where a.attrelid = 'public.things'::regclass and a.attname in ('name', 'tag') order by 1`,
    );
    expect(colls).toEqual([
      { attname: 'name', collname: 'ci' },
      { attname: 'tag', collname: 'ci' },
    ]);

    const before = [await rowVersions(server, 'feelings'), await rowVersions(server, 'things')];
    for (const r of await agent.agent.verify({ dryRun: false })) expect(r.rowsUploaded, r.table).toBe(0);
    // Rolling verification (one slice a run): nothing re-sent either.
    await using rolling = await startTestAgent(local, server, reg, { verification: { periodHours: 1.25 } });
    for (const r of (await rolling.agent.tick()).tables) {
      expect(r.error, r.table).toBeUndefined();
      expect(r.rowsUploaded, r.table).toBe(0);
    }
    expect([await rowVersions(server, 'feelings'), await rowVersions(server, 'things')]).toEqual(before);

    // A change in case only is a change: found and repaired.
    await server.db.query(`update things set name = lower(name) where id = 7`);
    const found = await agent.agent.verify({ dryRun: false });
    expect(found.find((r) => r.table === 'public.things')?.diff?.changed).toEqual([['7']]);
    expect(await dumpRows(server.db, 'public.things')).toEqual(await dumpRows(local, 'public.things'));
  });

  it('a citext key whose case changes locally takes the new spelling on the cloud, and verify tells spellings apart', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    await server.db.query(`create extension citext`);
    await local.query(`create extension citext`);
    await local.query(`create table users (login citext primary key, n int not null)`);
    await local.query(`insert into users values ('Alice', 1), ('Bob', 2), ('Carol', 3)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('users');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);

    await local.query(`update users set login = 'ALICE' where login = 'alice'`);
    expect((await agent.agent.tick()).converged).toBe(true);
    const logins = async (db: TestDatabase) => (await db.query<{ login: string }>(`select login::text from users order by login`)).map((r) => r.login);
    expect(await logins(server.db)).toEqual(['ALICE', 'Bob', 'Carol']);

    // Same key for citext, other spelling: verify must see it.
    await server.db.query(`update users set login = 'bob' where login = 'Bob'`);
    const [dry] = await agent.agent.verify({ dryRun: true });
    expect(dry?.converged).toBe(false);
    const [fixed] = await agent.agent.verify({ dryRun: false });
    expect(fixed?.error).toBeUndefined();
    expect(await logins(server.db)).toEqual(['ALICE', 'Bob', 'Carol']);
    const [again] = await agent.agent.verify({ dryRun: true });
    expect(again?.converged).toBe(true);
  });

  it('values equal for their type but printed otherwise (numeric 1.0 and 1.00, -0, intervals, jsonb) are found and repaired', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    await local.query(`create table m (id int primary key, amount numeric, f float8, span interval, doc jsonb)`);
    await local.query(`insert into m select i, 1.0, 0, '1 day', '{"a": 1.0}' from generate_series(1, 200) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('m');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    const [clean] = await agent.agent.verify({ dryRun: true });
    expect(clean?.converged).toBe(true);

    await server.db.query(`update m set amount = 1.00 where id = 1`);
    await server.db.query(`update m set f = '-0' where id = 2`);
    await server.db.query(`update m set span = '24 hours' where id = 3`);
    await server.db.query(`update m set doc = '{"a": 1.00}' where id = 4`);
    const [dry] = await agent.agent.verify({ dryRun: true });
    expect(dry?.diff?.changed.map((k) => k[0]).sort()).toEqual(['1', '2', '3', '4']);
    await agent.agent.verify({ dryRun: false });
    expect(await dumpRows(server.db, 'public.m')).toEqual(await dumpRows(local, 'public.m'));

    // And locally: 1.0 becoming 1.00 reaches the cloud.
    await local.query(`update m set amount = 1.00 where id = 10`);
    expect((await agent.agent.tick()).converged).toBe(true);
    expect(await server.db.query(`select amount::text from m where id = 10`)).toEqual([{ amount: '1.00' }]);
  });

  it('a LATIN1 local database and a UTF-8 server hash non-ASCII text alike, with type hashing and text hashing', async () => {
    await using local = await createDatabase('local', { encoding: 'LATIN1' });
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    await local.query(`create table fast (id int primary key, name text, tag varchar(20), price numeric(10,2))`);
    await local.query(`create table slow (id int primary key, name text, amount numeric)`);
    await local.query(`insert into fast select i, 'café ' || i, 'naïve', i / 10.0 from generate_series(1, 200) i`);
    await local.query(`insert into slow select i, 'crème ' || i, i / 10.0 from generate_series(1, 200) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('fast');
    await agent.local.tracking.track('slow');
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
    expect(await server.db.query(`select name from fast where id = 1`)).toEqual([{ name: 'café 1' }]);

    const results = await agent.agent.verify({ dryRun: true });
    const byTable = new Map(results.map((r) => [r.table, r]));
    expect(byTable.get('public.fast')?.diff).toMatchObject({ hashKind: 'record', missing: [], extra: [], changed: [] });
    expect(byTable.get('public.slow')?.diff).toMatchObject({ hashKind: 'text', missing: [], extra: [], changed: [] });

    await server.db.query(`update fast set name = 'cafe 5' where id = 5`);
    await server.db.query(`update slow set name = 'creme 6' where id = 6`);
    const again = new Map((await agent.agent.verify({ dryRun: true })).map((r) => [r.table, r.diff?.changed]));
    expect(again.get('public.fast')).toEqual([['5']]);
    expect(again.get('public.slow')).toEqual([['6']]);
  });

  it('types and collations the server database lacks: an error naming them and the fix', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    await local.query(`create type mood as enum ('sad', 'ok'); create extension citext; ${CI}`);
    await local.query(`create table feelings (id int primary key, feeling mood)`);
    await local.query(`create table logins (id int primary key, login citext)`);
    await local.query(`create table names (id int primary key, name text collate ci)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    for (const t of ['feelings', 'logins', 'names']) await agent.local.tracking.track(t);
    const tick = await agent.agent.tick();
    const errors = new Map(tick.tables.map((t) => [t.table, t.error?.message ?? '']));
    expect(errors.get('public.feelings')).toMatch(/type mood, which the server database does not know: .*create type/);
    expect(errors.get('public.logins')).toMatch(/type citext, which the server database does not know: .*create extension/);
    expect(errors.get('public.names')).toMatch(/collation "public"\."ci", which the server database does not have: create it there .*create collation/);

    // Once created on the server, the tables sync.
    await server.db.query(`create type mood as enum ('sad', 'ok'); create extension citext; ${CI}`);
    expect((await agent.agent.tick({ checkCount: true })).converged).toBe(true);
  });

  it('a hostile collation name reaches no SQL but a quoted lookup: 400, nothing changed', async () => {
    await using server = await startTestServer({ admittedTypes: ADMITTED });
    const reg = await server.register('acme');
    const declaration = {
      columns: [
        { name: 'tidemark_version', type: 'bigint', notNull: true },
        { name: 'id', type: 'integer', notNull: true },
        { name: 'name', type: 'text', notNull: false, collation: { schema: 'public', name: 'C"; drop table tidemark.tenant_database; --' } },
      ],
      keyColumns: ['id'],
    };
    const res = await fetch(`${server.url}${tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'evil' })}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${reg.apiKey}`, 'content-type': 'application/json', 'x-tidemark-agent-id': 'agent-1' },
      body: JSON.stringify(declaration),
    });
    const body = (await res.json()) as { error?: { code: string; message: string } };
    expect(res.status).toBe(400);
    expect(body.error?.code).toBe('TM_COLUMN_TYPE_UNSUPPORTED');
    expect(body.error?.message).toMatch(/which the server database does not have/);
    expect(await server.db.query(`select count(*)::int as n from tidemark.tenant_database`)).toEqual([{ n: 1 }]);
    expect(await server.db.query(`select to_regclass('public.evil') as t`)).toEqual([{ t: null }]);
  });
});
