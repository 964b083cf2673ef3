/**
 * The tenant wall of replica tables created by an earlier server is brought to today's form at
 * start (each setting read once per statement, not per row), without waiting on a table someone
 * holds: that one keeps its former wall, as tight, until a later start.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { type Logger, silentLogger } from '../../src/shared/logger.js';
import { tablePath } from '../../src/shared/protocol.js';
import { createDatabase, type TestDatabase } from '../support/fixtures.js';
import { call, copyText, DECLARATION, json } from './walls-http.js';

const FORMER_WALL = `tidemark_client_id = current_setting('tidemark.client_id', true) and tidemark_database_id = nullif(current_setting('tidemark.database_id', true), '')::uuid`;

function warnings(): { log: Logger; lines: { fields: object; message: string }[] } {
  const lines: { fields: object; message: string }[] = [];
  const log: Logger = { ...silentLogger, warn: (fields, message) => lines.push({ fields, message }), child: () => log };
  return { log, lines };
}

async function start(db: TestDatabase, adminKey: string, log: Logger = silentLogger) {
  return startServer(
    loadServerConfig({ env: {}, flags: { databaseUrl: db.url, listen: '127.0.0.1:0', adminKey, logLevel: 'silent', allowSuperuser: true } }),
    log,
  );
}

async function wallOf(db: TestDatabase): Promise<string> {
  const rows = await db.query<{ qual: string; check: string }>(
    `select pg_get_expr(polqual, polrelid) as qual, pg_get_expr(polwithcheck, polrelid) as check from pg_policy where polrelid = 'public.items'::regclass and polname = 'tidemark_tenant_wall'`,
  );
  const row = rows[0];
  if (!row) throw new Error('no tenant wall on public.items');
  expect(row.check).toBe(row.qual);
  return row.qual;
}

describe('the tenant wall of replica tables', () => {
  it('reads the tenant settings once per statement, and a start brings former walls to that form unless the table is held', async () => {
    await using db = await createDatabase('server');
    const adminKey = randomBytes(16).toString('hex');
    const first = await start(db, adminKey);
    let reg: { clientId: string; databaseId: string; apiKey: string };
    try {
      const res = await fetch(`${first.url}/v1/admin/customers/alpha/databases`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'alpha' }),
      });
      reg = (await res.json()) as typeof reg;
      const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' });
      expect((await call(first, 'PUT', path, { key: reg.apiKey, ...json(DECLARATION) })).status).toBe(200);
    } finally {
      await first.close();
    }
    expect(await wallOf(db)).toMatch(/= \( SELECT current_setting\('tidemark\.client_id'::text, true\) AS current_setting\)/);

    // A replica made by an earlier server: the wall reads the settings per row.
    await db.query(`alter policy tidemark_tenant_wall on public.items using (${FORMER_WALL}) with check (${FORMER_WALL})`);
    const former = await wallOf(db);
    expect(former).not.toMatch(/SELECT/);

    // Someone holds the table (a long report): the start does not wait for it, and says so.
    const reader = new pg.Client({ connectionString: db.url });
    await reader.connect();
    try {
      await reader.query('begin');
      await reader.query('lock table public.items in access share mode');
      const { log, lines } = warnings();
      const held = await start(db, adminKey, log);
      await held.close();
      expect(lines.filter((l) => /tenant wall/.test(l.message)).map((l) => (l.fields as { table: string }).table)).toEqual(['public.items']);
      expect(await wallOf(db)).toBe(former);
      await reader.query('rollback');
    } finally {
      await reader.end();
    }

    // The next start brings it to today's form; the wall keeps working.
    const { log, lines } = warnings();
    const next = await start(db, adminKey, log);
    try {
      expect(lines.filter((l) => /tenant wall/.test(l.message))).toEqual([]);
      expect(await wallOf(db)).toMatch(/SELECT current_setting/);
      const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' });
      const rows = Array.from({ length: 5000 }, (_, i) => `1\t${i + 1}\tname ${i + 1} ${'x'.repeat(20)}\n`).join('');
      expect(Buffer.byteLength(rows)).toBeGreaterThan(64 * 1024); // through the staging table
      const up = await call(next, 'POST', `${path}?insertOnly=true`, { key: reg.apiKey, ...copyText(rows) });
      expect(up.status, JSON.stringify(up.body)).toBe(200);
      expect(up.body).toMatchObject({ rowsReceived: 5000, rowsInserted: 5000, summary: { rowCount: 5000, maxVersion: '1' } });
    } finally {
      await next.close();
    }
  });
});
