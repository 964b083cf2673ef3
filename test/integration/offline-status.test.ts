/**
 * Offline sites, the operator's side (through the CLI as a user runs it, against real PostgreSQL
 * and a real server on 127.0.0.1): `tidemark status` and the admin API show the last bundle
 * imported; a server from before the bundle_import migration keeps its imports; the walls of the
 * online path hold for bundles too (end-of-data lines, the admin key throttle, one writer at a time).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { migrate } from '../../src/server/migrations.js';
import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import { apiKeySha256, BUNDLE_MAGIC, bundleHmac, FRAME_HEADER_BYTES, FrameType, frameHeader } from '../../src/shared/protocol/bundle.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { createDatabase, dumpRows, startTestServer, type TestDatabase } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

async function tracked(local: TestDatabase): Promise<void> {
  await local.query(`create table items (id int primary key, name text)`);
  await local.query(`insert into items select i, 'item ' || i from generate_series(1, 300) i`);
  const track = await tidemark(['track', '--database', local.url, 'public.items']);
  expect(track.code, track.stderr).toBe(0);
}

function exportArgs(local: TestDatabase, reg: Pick<RegisterResult, 'clientId' | 'databaseId' | 'apiKey'>, out: string): string[] {
  return ['export', '--database', local.url, '--client', reg.clientId, '--database-id', reg.databaseId, '--api-key', reg.apiKey, '--out', out];
}

function importArgs(server: { url: string; adminKey: string }, bundle: string, receipt: string): string[] {
  return ['import', '--server', server.url, '--admin-key', server.adminKey, bundle, '--receipt-out', receipt];
}

async function adminGet(server: { url: string; adminKey: string }, path: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${server.adminKey}` } });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A bundle's frames (after the magic), and the bundle rebuilt from frames and signed with `apiKey`. */
function framesOf(bundle: Buffer): { type: number; payload: Buffer }[] {
  const frames: { type: number; payload: Buffer }[] = [];
  for (let at = BUNDLE_MAGIC.length; at < bundle.length; ) {
    const length = bundle.readUInt32BE(at + 1);
    frames.push({ type: bundle.readUInt8(at), payload: bundle.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length) });
    at += FRAME_HEADER_BYTES + length;
  }
  return frames;
}

function signed(frames: { type: number; payload: Buffer }[], apiKey: string): Buffer {
  const parts: Buffer[] = [BUNDLE_MAGIC];
  for (const f of frames.filter((f) => f.type !== FrameType.mac)) parts.push(frameHeader(f.type as FrameType, f.payload.length), f.payload);
  const mac = bundleHmac(apiKeySha256(apiKey));
  for (const p of parts) mac.update(p);
  const digest = mac.digest();
  return Buffer.concat([...parts, frameHeader(FrameType.mac, digest.length), digest]);
}

describe('offline sites: status, migration and walls', () => {
  it('tidemark status and the admin database answer show the last bundle imported and the cloud copy age', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await tracked(local);
    const reg = await server.register('acme', 'ship');
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-offline-status-'));
    const env = {
      TIDEMARK_DATABASE_URL: local.url,
      TIDEMARK_SERVER_URL: server.url,
      TIDEMARK_CLIENT_ID: reg.clientId,
      TIDEMARK_DATABASE_ID: reg.databaseId,
      TIDEMARK_API_KEY: reg.apiKey,
    };

    // Before any bundle: the table is behind (nothing on the server yet: exit 1, no error), no
    // offline line, no bundle in the admin answer.
    const before = await tidemark(['status'], env);
    expect(before.code, before.stderr).toBe(1);
    expect(before.stderr).toMatch(/1 of 1 table\(s\) not in sync \(1 behind\)$/m);
    expect(before.stdout).not.toMatch(/offline bundles/);
    const admin0 = await adminGet(server, `/v1/admin/customers/acme/databases/${reg.databaseId}`);
    expect(admin0.status).toBe(200);
    expect(admin0.body.bundle).toBeUndefined();

    const exported = await tidemark(exportArgs(local, reg, join(dir, 'b1')));
    expect(exported.code, exported.stderr).toBe(0);
    const imported = await tidemark(importArgs(server, join(dir, 'b1'), join(dir, 'r1')));
    expect(imported.code, imported.stderr).toBe(0);
    const { sequence, bytes } = JSON.parse(imported.stdout) as { sequence: string; bytes: number };

    const after = await tidemark(['status'], env);
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toMatch(/public\.items +300 +300 /);
    expect(after.stdout).toMatch(
      new RegExp(
        `^offline bundles: last imported \\S+ \\(exported \\S+, sequence ${sequence}\\): 300 rows, 0 deletes, ${bytes} bytes; the cloud copy is \\d+s old`,
        'm',
      ),
    );
    // --json keeps its shape (the array of tables).
    const json = await tidemark(['status', '--json'], env);
    expect(Array.isArray(JSON.parse(json.stdout))).toBe(true);

    const admin1 = await adminGet(server, `/v1/admin/customers/acme/databases/${reg.databaseId}`);
    expect(admin1.body.bundle).toMatchObject({ lastImport: { sequence, rows: 300, deletes: 0, bytes }, ageSeconds: expect.any(Number) });
    expect(admin1.body.tables).toHaveLength(1);

    // The tenant route answers only the database's own key.
    const other = await server.register('acme', 'other');
    const path = `/v1/customers/acme/databases/${reg.databaseId}/bundle`;
    expect((await fetch(`${server.url}${path}`, { headers: { authorization: `Bearer ${other.apiKey}` } })).status).toBe(403);
    expect((await fetch(`${server.url}${path}`)).status).toBe(401);
  });

  it('a server database where an older server created bundle_import on first use migrates and keeps its imports', async () => {
    await using db = await createDatabase('local'); // empty: migrated below
    await using local = await createDatabase('local');
    await tracked(local);
    // The older server: the first migration, then the table as its first import created it.
    await migrate(db.pool, 1);
    const apiKey = `tmk_${randomBytes(16).toString('hex')}`;
    const reg = { clientId: 'acme', databaseId: '6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10', apiKey };
    await db.query(`insert into tidemark.tenant_database (client_id, database_id, name, api_key_hash) values ($1, $2, 'ship', $3)`, [
      reg.clientId,
      reg.databaseId,
      apiKeySha256(apiKey),
    ]);
    await db.query(`
      create table tidemark.bundle_import (
        client_id text not null, database_id uuid not null, sequence bigint not null, created_at timestamptz not null,
        imported_at timestamptz not null default now(), rows bigint not null, deletes bigint not null, bytes bigint not null,
        primary key (client_id, database_id),
        foreign key (client_id, database_id) references tidemark.tenant_database on delete cascade)`);
    await db.query(
      `insert into tidemark.bundle_import (client_id, database_id, sequence, created_at, rows, deletes, bytes) values ($1, $2, 3, now(), 42, 1, 999)`,
      [reg.clientId, reg.databaseId],
    );

    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    const config = loadServerConfig({ env: {}, flags: { databaseUrl: db.url, listen: '127.0.0.1:0', adminKey, logLevel: 'silent', allowSuperuser: true } });
    const running = await startServer(config, silentLogger);
    try {
      const server = { url: running.url, adminKey };
      const kept = await adminGet(server, `/v1/admin/customers/acme/databases/${reg.databaseId}/bundle`);
      expect(kept.body.lastImport).toMatchObject({ sequence: '3', rows: 42, deletes: 1, bytes: 999 });

      const dir = await mkdtemp(join(tmpdir(), 'tidemark-offline-migrate-'));
      expect((await tidemark(exportArgs(local, reg, join(dir, 'b1')))).code).toBe(0);
      const imported = await tidemark(importArgs(server, join(dir, 'b1'), join(dir, 'r1')));
      expect(imported.code, imported.stderr).toBe(0);
      expect(JSON.parse(imported.stdout)).toMatchObject({ applied: true, rows: 300 });
      const now = await adminGet(server, `/v1/admin/customers/acme/databases/${reg.databaseId}/bundle`);
      expect(now.body.lastImport).toMatchObject({ rows: 300 });
    } finally {
      await running.close();
    }
  });

  it('refuses, whole, a genuine-key bundle whose rows hold an end-of-data line (COPY would drop what follows it), or whose key set is malformed', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await tracked(local);
    const reg = await server.register('acme', 'ship');
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-offline-marker-'));
    expect((await tidemark(exportArgs(local, reg, join(dir, 'b1')))).code).toBe(0);
    const frames = framesOf(readFileSync(join(dir, 'b1')));
    const rows = frames.find((f) => f.type === FrameType.rows);
    if (!rows) throw new Error('no rows frame');
    const text = rows.payload.toString('utf8');
    const cut = text.indexOf('\n', text.length / 2) + 1;
    rows.payload = Buffer.from(`${text.slice(0, cut)}\\.\n${text.slice(cut)}`);
    writeFileSync(join(dir, 'bad'), signed(frames, reg.apiKey));

    const r = await tidemark(importArgs(server, join(dir, 'bad'), join(dir, 'rbad')));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/bundle refused: a rows frame contains an end-of-data line/);
    const [declared] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.table_state`);
    expect(declared?.n).toBe(0);
    // A key set of the wrong shape (a version that is no number) is refused whole too: the first pass
    // checks every key-set frame, before the rows frames before it apply.
    const keysBroken = framesOf(readFileSync(join(dir, 'b1')));
    const keys = keysBroken.find((f) => f.type === FrameType.keys);
    if (!keys) throw new Error('no key-set frame');
    keys.payload = Buffer.from(keys.payload.toString('utf8').replace(/,"(\d+)"\]/, ',"v$1"]'));
    writeFileSync(join(dir, 'badkeys'), signed(keysBroken, reg.apiKey));
    const rk = await tidemark(importArgs(server, join(dir, 'badkeys'), join(dir, 'rbadkeys')));
    expect(rk.code).toBe(1);
    expect(rk.stderr).toMatch(/bundle refused: its key set is invalid/);
    const [still] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.table_state`);
    expect(still?.n).toBe(0);
    // Key sets that JavaScript's JSON reads but the import's reader, PostgreSQL, cannot: a bucket
    // written 1.0 (cast to int from its text) and a key holding U+0000 (jsonb has no NUL). Checked
    // before anything applies, by the same reader: refused whole, never halfway through the import.
    for (const [label, edit] of [
      ['a bucket written 1.0', (t: string) => t.replace(/"buckets":\s*\[(\d+)/, '"buckets":[$1.0')],
      ['a key holding U+0000', (t: string) => t.replace(/\[\["/, '[["\\u0000')],
    ] as const) {
      const broken = framesOf(readFileSync(join(dir, 'b1')));
      const set = broken.find((f) => f.type === FrameType.keys);
      if (!set) throw new Error('no key-set frame');
      const text = set.payload.toString('utf8');
      set.payload = Buffer.from(edit(text));
      expect(set.payload.toString('utf8'), label).not.toBe(text);
      writeFileSync(join(dir, 'odd'), signed(broken, reg.apiKey));
      const ro = await tidemark(importArgs(server, join(dir, 'odd'), join(dir, 'rodd')));
      expect(ro.stderr, label).toMatch(/bundle refused: its key set is (invalid|not JSON)/);
      expect(ro.code, label).toBe(1);
      const [none] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.table_state`);
      expect(none?.n, label).toBe(0);
    }
    // Re-signed unchanged, the same frames apply: only the marker was refused.
    const good = framesOf(readFileSync(join(dir, 'b1')));
    writeFileSync(join(dir, 'resigned'), signed(good, reg.apiKey));
    const ok = await tidemark(importArgs(server, join(dir, 'resigned'), join(dir, 'r1')));
    expect(ok.code, ok.stderr).toBe(0);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('an import waits for another import holding the lease, under any name', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await tracked(local);
    const reg = await server.register('acme', 'ship');
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-offline-lease-'));
    expect((await tidemark(exportArgs(local, reg, join(dir, 'b1')))).code).toBe(0);
    // Another import applying now, as this server names them and as the previous version did.
    for (const holder of ['tidemark-bundle-import:7d4f0c1e-0000-4000-8000-000000000000', 'tidemark-bundle-import']) {
      await server.db.query(`update tidemark.tenant_database set lease_agent_id = $1, lease_expires_at = now() + interval '1 hour'`, [holder]);
      const r = await tidemark(importArgs(server, join(dir, 'b1'), join(dir, 'r1')));
      expect(r.code, holder).toBe(1);
      expect(r.stderr, holder).toMatch(/another bundle is being imported .*\[TM_LEASE_HELD\]/);
      const [n] = await server.db.query<{ n: number }>(`select count(*)::int as n from tidemark.table_state`);
      expect(n?.n, holder).toBe(0);
    }
    await server.db.query(`update tidemark.tenant_database set lease_expires_at = now() - interval '1 second'`);
    const r = await tidemark(importArgs(server, join(dir, 'b1'), join(dir, 'r1')));
    expect(r.code, r.stderr).toBe(0);
    // It freed the lease at once.
    const [lease] = await server.db.query<{ free: boolean }>(`select lease_expires_at < now() as free from tidemark.tenant_database`);
    expect(lease?.free).toBe(true);
  });

  it('counts wrong admin keys on the bundle routes in the authentication throttle', async () => {
    await using server = await startTestServer({ authFailureLimit: 3, authFailureWindowSeconds: 3600 });
    const post = (key: string): Promise<Response> =>
      fetch(`${server.url}/v1/admin/bundles`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/vnd.tidemark.bundle' },
        body: 'x',
      });
    for (let i = 0; i < 3; i++) expect((await post(`guess-${i}`)).status).toBe(401);
    expect((await post('guess-more')).status).toBe(429);
  });
});
