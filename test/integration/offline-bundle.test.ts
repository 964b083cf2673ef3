/**
 * Offline sites through the CLI as a user runs it (`node dist/cli/main.js export|import`), against
 * real PostgreSQL and a real server on 127.0.0.1: bundles and receipts carry inserts, updates,
 * deletes and key changes; replays and older bundles change nothing; altered, truncated and
 * foreign bundles are refused and change nothing; online runs and file exchanges mix.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { RegisterResult } from '../../src/shared/protocol.js';
import { createDatabase, dumpRows, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

interface Site {
  local: TestDatabase;
  server: TestServer;
  reg: RegisterResult;
  dir: string;
  exportBundle(name: string, receipt?: string, extra?: string[]): Promise<Record<string, unknown>>;
  importBundle(name: string, receiptOut: string): Promise<{ code: number; json: Record<string, unknown> | null; stderr: string }>;
  equal(): Promise<void>;
}

async function site(local: TestDatabase, server: TestServer): Promise<Site> {
  await local.query(`create table items (id int primary key, name text, qty numeric)`);
  await local.query(`insert into items select i, 'item ' || i, i * 1.5 from generate_series(1, 300) i`);
  const track = await tidemark(['track', '--database', local.url, 'public.items']);
  expect(track.code, track.stderr).toBe(0);
  const reg = await server.register('acme', 'ship');
  const dir = await mkdtemp(join(tmpdir(), 'tidemark-offline-'));
  const p = (name: string): string => join(dir, name);
  return {
    local,
    server,
    reg,
    dir,
    async exportBundle(name, receipt, extra = []) {
      const args = ['export', '--database', local.url, '--client', reg.clientId, '--database-id', reg.databaseId, '--api-key', reg.apiKey];
      const r = await tidemark([...args, '--out', p(name), ...(receipt ? ['--receipt', p(receipt)] : []), ...extra]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(1);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    },
    async importBundle(name, receiptOut) {
      const r = await tidemark(['import', '--server', server.url, '--admin-key', server.adminKey, p(name), '--receipt-out', p(receiptOut)]);
      return { code: r.code, json: r.code === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : null, stderr: r.stderr };
    },
    async equal() {
      expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    },
  };
}

/** Some of every kind of change: inserts, updates, deletes and a primary-key change. */
async function change(local: TestDatabase, from: number): Promise<void> {
  await local.query(`insert into items select i, 'new ' || i, 0 from generate_series($1::int, $1::int + 9) i`, [from]);
  await local.query(`update items set name = name || ' (updated)' where id between 1 and 5`);
  await local.query(`delete from items where id in (select id from items where id between 6 and 200 order by id limit 5)`);
  await local.query(`update items set id = $1::int + 100 where id = (select min(id) from items where id between 20 and 200)`, [from]);
}

describe('offline sites: export and import by files', () => {
  it('a first bundle, then a second from the receipt with inserts, updates, deletes and a key change; replays and older bundles change nothing', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const s = await site(local, server);

    const first = await s.exportBundle('b1');
    expect(first).toMatchObject({ tables: 1, rows: 300 });
    const i1 = await s.importBundle('b1', 'r1');
    expect(i1.code, i1.stderr).toBe(0);
    expect(i1.json).toMatchObject({ applied: true, rows: 300, deletes: 0, matches: true });
    await s.equal();

    await change(local, 1000);
    const second = await s.exportBundle('b2', 'r1');
    // Only the changed rows travel: 10 inserts, 5 updates, 1 key change.
    expect(second).toMatchObject({ tables: 1, rows: 16 });
    expect(second.bytes as number).toBeLessThan(first.bytes as number);
    const i2 = await s.importBundle('b2', 'r2');
    expect(i2.code, i2.stderr).toBe(0);
    expect(i2.json).toMatchObject({ applied: true, rows: 16, deletes: 6, matches: true });
    await s.equal();

    // A third from the second's receipt.
    await change(local, 2000);
    expect(await s.exportBundle('b3', 'r2')).toMatchObject({ rows: 16 });
    expect((await s.importBundle('b3', 'r3')).json).toMatchObject({ applied: true, matches: true });
    await s.equal();

    // Replay, and older bundles after newer ones: nothing changes.
    const before = await dumpRows(server.db, 'public.items');
    for (const old of ['b3', 'b2', 'b1']) {
      const r = await s.importBundle(old, 'rx');
      expect(r.code, r.stderr).toBe(0);
      expect(r.json).toMatchObject({ applied: false, rows: 0, deletes: 0 });
    }
    expect(await dumpRows(server.db, 'public.items')).toEqual(before);
  });

  it('deletes rows whose composite text key holds quotes, backslashes, commas, brackets and non-ASCII text', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const s = await site(local, server);
    // The deletion check compares the bundle's key set with the cloud's in PostgreSQL (JSON on both
    // sides): keys whose text needs escaping must match exactly, or rows would be kept or deleted wrongly.
    const odd = ['plain', 'a "quoted" one', 'back\\slash', 'comma, here', '[bracket]', '{brace}', 'été ✓', "it's", 'tab\there', ''];
    await local.query(`create table tags (a text, b text, n int not null, primary key (a, b))`);
    await local.query(`insert into tags select x, y, 1 from unnest($1::text[]) x, unnest($1::text[]) y`, [odd]);
    expect((await tidemark(['track', '--database', local.url, 'public.tags'])).code).toBe(0);
    const tags = async (db: TestDatabase): Promise<unknown> => dumpRows(db, 'public.tags');

    expect(await s.exportBundle('b1')).toMatchObject({ tables: 2, rows: 300 + odd.length ** 2 });
    expect((await s.importBundle('b1', 'r1')).json).toMatchObject({ applied: true, deletes: 0, matches: true });
    expect(await tags(server.db)).toEqual(await tags(local));

    // Deletes of odd keys, and a key change from one odd key to another.
    const gone = await local.query(`delete from tags where a = any($1::text[]) and b <> 'plain' returning a`, [odd.slice(1, 4)]);
    await local.query(`update tags set b = 'new ' || b where a = $1::text and b = $2::text`, [odd[6], odd[2]]);
    await s.exportBundle('b2', 'r1');
    const i2 = await s.importBundle('b2', 'r2');
    expect(i2.code, i2.stderr).toBe(0);
    expect(i2.json).toMatchObject({ applied: true, deletes: gone.length + 1, matches: true });
    expect(await tags(server.db)).toEqual(await tags(local));
    await s.equal();
  });

  // Apart from the test above (fewer process starts per test on a loaded machine).
  it('a bundle made without the latest receipt, or without any, carries more and still converges; the admin API shows the last one', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const s = await site(local, server);
    await s.exportBundle('b1');
    expect((await s.importBundle('b1', 'r1')).json).toMatchObject({ applied: true, matches: true });
    await change(local, 1000);
    await s.exportBundle('b2', 'r1');
    expect((await s.importBundle('b2', 'r2')).json).toMatchObject({ applied: true, matches: true });

    // A bundle made without the latest receipt carries more and still converges.
    await change(local, 3000);
    expect((await s.exportBundle('b4', 'r1')).rows as number).toBeGreaterThan(16);
    expect((await s.importBundle('b4', 'r4')).json).toMatchObject({ applied: true, matches: true });
    await s.equal();
    await change(local, 4000);
    expect(await s.exportBundle('b5')).toMatchObject({ rows: await countRows(local) });
    expect((await s.importBundle('b5', 'r5')).json).toMatchObject({ applied: true, matches: true });
    await s.equal();

    // The admin API (here through the CLI) shows the last bundle imported.
    const shown = await tidemark([
      'bundle-status',
      '--server',
      server.url,
      '--admin-key',
      server.adminKey,
      '--client',
      'acme',
      '--database-id',
      s.reg.databaseId,
    ]);
    expect(shown.code, shown.stderr).toBe(0);
    const status = JSON.parse(shown.stdout) as { lastImport: { rows: number; sequence: string } | null; ageSeconds: number | null };
    expect(status.lastImport).toMatchObject({ rows: await countRows(local) });
    expect(status.ageSeconds).not.toBeNull();
  });

  // Two tests, not one: each variant is an import through the CLI (a process start), and a test
  // holding all of them outgrew the test timeout on a loaded machine.
  it('refuses a bundle altered in any byte, and changes nothing', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const { s, good } = await tamperable(local, server);
    const variants: [string, Buffer, RegExp][] = [];
    for (const at of [0, 30, Math.floor(good.length / 2), good.length - 40, good.length - 1]) {
      const bad = Buffer.from(good);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      variants.push([`byte ${at} flipped`, bad, /bundle refused/]);
    }
    await refusedAll(s, variants);
  });

  it('refuses a truncated, extended or foreign bundle, and changes nothing', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const { s, good } = await tamperable(local, server);
    const variants: [string, Buffer, RegExp][] = [];
    variants.push(['truncated', good.subarray(0, good.length - 10), /bundle refused: .*truncated/]);
    variants.push(['cut before its MAC', good.subarray(0, good.length - 37), /bundle refused: .*truncated/]);
    variants.push(['extended', Buffer.concat([good, Buffer.from('x')]), /bundle refused/]);

    // Foreign: made for this database with another database's key, and for another database.
    const other = await server.register('acme', 'other ship');
    const foreign = await tidemark([
      'export',
      '--database',
      local.url,
      '--client',
      s.reg.clientId,
      '--database-id',
      s.reg.databaseId,
      '--api-key',
      other.apiKey,
      '--out',
      join(s.dir, 'foreign'),
    ]);
    expect(foreign.code, foreign.stderr).toBe(0);
    variants.push(['signed with another database key', readFileSync(join(s.dir, 'foreign')), /bundle refused: its MAC does not match/]);
    const retargeted = Buffer.from(good.toString('latin1').replace(s.reg.databaseId, other.databaseId), 'latin1');
    variants.push(['header pointed at another database', retargeted, /bundle refused: its MAC does not match/]);
    await refusedAll(s, variants);
  });

  it('says when two bundles from one receipt leave the cloud different, and a bundle without a receipt repairs it', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const s = await site(local, server);
    await s.exportBundle('b1');
    expect((await s.importBundle('b1', 'r1')).json).toMatchObject({ applied: true, matches: true });
    // Both from r1: the row inserted for the first is gone before the second, whose bucket is back as r1 knew it.
    await local.query(`insert into items values (5000, 'short-lived', 1)`);
    await s.exportBundle('ba', 'r1');
    expect((await s.importBundle('ba', 'ra')).json).toMatchObject({ applied: true, matches: true });
    await local.query(`delete from items where id = 5000`);
    expect(await s.exportBundle('bb', 'r1')).toMatchObject({ rows: 0, deletes: 0 });
    const stale = await s.importBundle('bb', 'rb');
    expect(stale.json).toMatchObject({ applied: true, matches: false });
    expect(stale.stderr).toMatch(/export once without --receipt/);
    // The full bundle repairs it.
    await s.exportBundle('bc');
    expect((await s.importBundle('bc', 'rc')).json).toMatchObject({ applied: true, matches: true, deletes: 1 });
    await s.equal();
  });

  it('mixes online runs and file exchanges and converges', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    const s = await site(local, server);
    const online = ['--database', local.url, '--server', server.url, '--client', s.reg.clientId, '--database-id', s.reg.databaseId, '--api-key', s.reg.apiKey];

    const sync1 = await tidemark(['sync', '--once', ...online]);
    expect(sync1.code, sync1.stderr).toBe(0);
    await s.equal();

    // The link goes down: bundles, the first without a receipt. While the online agent's lease
    // lives, an import is refused (one writer per database); then the lease expires (set in the
    // cloud database rather than waited for).
    await change(local, 1000);
    await s.exportBundle('b1');
    const held = await s.importBundle('b1', 'r1');
    expect(held.code).toBe(1);
    expect(held.stderr).toMatch(/an agent is syncing .* online .*\[TM_LEASE_HELD\]/);
    await server.db.query(`update tidemark.tenant_database set lease_expires_at = now() - interval '1 second'`);
    expect((await s.importBundle('b1', 'r1')).json).toMatchObject({ applied: true, matches: true });
    await s.equal();
    await change(local, 2000);
    await s.exportBundle('b2', 'r1');
    expect((await s.importBundle('b2', 'r2')).json).toMatchObject({ applied: true, matches: true });
    await s.equal();

    // The link is back: an online run right after an import (the import freed the lease).
    await change(local, 3000);
    const sync2 = await tidemark(['sync', '--once', ...online]);
    expect(sync2.code, sync2.stderr).toBe(0);
    await s.equal();

    // Down again: a bundle from the receipt made before the online run still converges.
    await change(local, 4000);
    await s.exportBundle('b3', 'r2');
    await server.db.query(`update tidemark.tenant_database set lease_expires_at = now() - interval '1 second'`);
    expect((await s.importBundle('b3', 'r3')).json).toMatchObject({ applied: true });
    await s.equal();
  });
});

async function countRows(db: TestDatabase): Promise<number> {
  const [r] = await db.query<{ n: number }>(`select count(*)::int as n from items`);
  return r?.n ?? 0;
}

/** A site with a first bundle imported and a second exported from its receipt: `good`, the second's bytes. */
async function tamperable(local: TestDatabase, server: TestServer): Promise<{ s: Site; good: Buffer }> {
  const s = await site(local, server);
  await s.exportBundle('b1');
  expect((await s.importBundle('b1', 'r1')).json).toMatchObject({ applied: true });
  await change(local, 1000);
  await s.exportBundle('b2', 'r1');
  return { s, good: readFileSync(join(s.dir, 'b2')) };
}

/** Each variant is refused with one line and changes nothing; the genuine bundle still applies afterwards. */
async function refusedAll(s: Site, variants: [string, Buffer, RegExp][]): Promise<void> {
  const before = await dumpRows(s.server.db, 'public.items');
  for (const [what, bytes, message] of variants) {
    writeFileSync(join(s.dir, 'bad'), bytes);
    const r = await s.importBundle('bad', 'rbad');
    expect(r.code, what).toBe(1);
    expect(r.stderr, what).toMatch(message);
    expect(r.stderr.trim().split('\n'), what).toHaveLength(1);
    expect(await dumpRows(s.server.db, 'public.items'), what).toEqual(before);
  }
  expect((await s.importBundle('b2', 'r2')).json).toMatchObject({ applied: true, matches: true });
  await s.equal();
}
