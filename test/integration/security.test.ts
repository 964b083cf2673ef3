import { randomBytes } from 'node:crypto';

import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { startServer } from '../../src/server/start-server.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import { tablePath } from '../../src/shared/protocol.js';
import { createDatabase, startTestAgent, startTestServer, type TestServer } from '../support/fixtures.js';

const DECLARATION = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 'name', type: 'text', notNull: false },
  ],
  keyColumns: ['id'],
};

async function call(
  server: { url: string },
  method: string,
  path: string,
  options: { key?: string; body?: string; contentType?: string; agentId?: string } = {},
): Promise<{ status: number; body: { error?: { code: string; message: string } } & Record<string, unknown> }> {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: {
      ...(options.key ? { authorization: `Bearer ${options.key}` } : {}),
      ...(options.contentType ? { 'content-type': options.contentType } : {}),
      'x-tidemark-agent-id': options.agentId ?? 'agent-1',
    },
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } };
}

async function declared(server: TestServer, clientId: string) {
  const reg = await server.register(clientId);
  const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' });
  const put = await call(server, 'PUT', path, { key: reg.apiKey, body: JSON.stringify(DECLARATION), contentType: 'application/json' });
  expect(put.status).toBe(200);
  return { reg, path };
}

const rowsOf = (server: TestServer) => server.db.query<{ n: number }>(`select count(*)::int as n from public.items`);

describe('server security and bad input', () => {
  it('answers 401 without a key or with an unknown one, and 403 on another tenant path, changing nothing', async () => {
    await using server = await startTestServer();
    const a = await declared(server, 'alpha');
    const b = await declared(server, 'beta');
    const good = await call(server, 'POST', a.path, { key: a.reg.apiKey, body: '1\t1\tone\n', contentType: 'text/tab-separated-values' });
    expect(good.status).toBe(200);

    expect((await call(server, 'GET', a.path)).status).toBe(401);
    expect((await call(server, 'GET', a.path, { key: 'tmk_not-a-key' })).status).toBe(401);
    // Beta's key on alpha's path: every verb is refused and nothing moves.
    for (const [method, body, contentType] of [
      ['GET', undefined, undefined],
      ['POST', '5\t2\tintruder\n', 'text/tab-separated-values'],
      ['DELETE', JSON.stringify({ all: true }), 'application/json'],
      ['PUT', JSON.stringify(DECLARATION), 'application/json'],
    ] as const) {
      const res = await call(server, method, a.path, { key: b.reg.apiKey, ...(body ? { body } : {}), ...(contentType ? { contentType } : {}) });
      expect(res.status, method).toBe(403);
      expect(res.body.error?.code).toBe('TM_AUTH_FORBIDDEN');
    }
    const manifest = await call(server, 'POST', `${a.path}/manifest`, {
      key: b.reg.apiKey,
      body: JSON.stringify({ mode: 'count', ranges: [{ lower: null, upper: null }] }),
      contentType: 'application/json',
    });
    expect(manifest.status).toBe(403);
    expect(await server.db.query(`select name, tidemark_client_id from public.items`)).toEqual([{ name: 'one', tidemark_client_id: 'alpha' }]);
  });

  it('refuses malformed COPY data with 400 and PostgreSQL message, writing nothing', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const bad = await call(server, 'POST', path, {
      key: reg.apiKey,
      body: '1\t1\tok\n2\tnot-an-int\tbad\n',
      contentType: 'text/tab-separated-values',
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error?.code).toBe('TM_UPLOAD_REJECTED');
    expect(bad.body.error?.message).toMatch(/invalid input syntax for type integer/);
    const wrongWidth = await call(server, 'POST', path, { key: reg.apiKey, body: '1\t1\n', contentType: 'text/tab-separated-values' });
    expect(wrongWidth.status).toBe(400);
    expect(await rowsOf(server)).toEqual([{ n: 0 }]);
    const summary = await call(server, 'GET', path, { key: reg.apiKey });
    expect(summary.body.rowCount).toBe(0);
  });

  it('refuses oversized bodies with 413, before and after decompression', async () => {
    await using server = await startTestServer({ maxBodyBytes: 2048 });
    const { reg, path } = await declared(server, 'alpha');
    const lines = Array.from({ length: 200 }, (_, i) => `1\t${i}\t${'x'.repeat(20)}\n`).join('');
    const big = await call(server, 'POST', path, { key: reg.apiKey, body: lines, contentType: 'text/tab-separated-values' });
    expect(big.status).toBe(413);
    expect(big.body.error?.code).toBe('TM_PAYLOAD_TOO_LARGE');
    const { gzipSync } = await import('node:zlib');
    const res = await fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${reg.apiKey}`,
        'content-type': 'text/tab-separated-values',
        'content-encoding': 'gzip',
        'x-tidemark-agent-id': 'agent-1',
      },
      body: gzipSync(Buffer.from(lines)),
    });
    expect(res.status).toBe(413);
    expect(await rowsOf(server)).toEqual([{ n: 0 }]);
  });

  it("accepts another tenant's different columns of a shared table, and names none of the first tenant's columns", async () => {
    await using server = await startTestServer();
    await declared(server, 'alpha');
    const other = await server.register('beta');
    const path = tablePath(other.clientId, other.databaseId, { schema: 'public', name: 'items' });
    const changed = {
      columns: [DECLARATION.columns[0], DECLARATION.columns[1], { name: 'title', type: 'text', notNull: false }],
      keyColumns: ['id'],
    };
    const res = await call(server, 'PUT', path, { key: other.apiKey, body: JSON.stringify(changed), contentType: 'application/json' });
    // The replica is the union of both shapes (issue 8, item 1); the answer is beta's own summary.
    expect(res.status).toBe(200);
    expect(JSON.stringify(res.body)).not.toMatch(/"name"/);
    const conflicting = { columns: [DECLARATION.columns[0], DECLARATION.columns[1], { name: 'name', type: 'uuid', notNull: false }], keyColumns: ['id'] };
    const refused = await call(server, 'PUT', path, { key: other.apiKey, body: JSON.stringify(conflicting), contentType: 'application/json' });
    expect(refused.status).toBe(409);
    expect(refused.body.error?.code).toBe('TM_REPLICA_SCHEMA_MISMATCH');
    expect(refused.body.error?.message).toMatch(/column name uuid/);
    expect(refused.body.error?.message).not.toMatch(/\btext\b/);
  });

  it('refuses type names that could smuggle SQL into DDL', async () => {
    await using server = await startTestServer();
    const reg = await server.register('alpha');
    const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'evil' });
    const evil = {
      columns: [DECLARATION.columns[0], { name: 'id', type: 'integer); drop table tidemark.tenant_database; --', notNull: true }],
      keyColumns: ['id'],
    };
    const res = await call(server, 'PUT', path, { key: reg.apiKey, body: JSON.stringify(evil), contentType: 'application/json' });
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('TM_COLUMN_TYPE_UNSUPPORTED');
    expect(await server.db.query(`select count(*)::int as n from tidemark.tenant_database`)).toEqual([{ n: 1 }]);
  });

  it('answers 404 for a table the database never declared', async () => {
    await using server = await startTestServer();
    const { reg } = await declared(server, 'alpha');
    const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'nope' });
    const res = await call(server, 'GET', path, { key: reg.apiKey });
    expect(res.status).toBe(404);
    expect(res.body.error?.code).toBe('TM_REPLICA_TABLE_UNKNOWN');
  });

  it('gives one agent the lease on a database; a second gets 409', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const second = await call(server, 'PUT', path, { key: reg.apiKey, body: JSON.stringify(DECLARATION), contentType: 'application/json', agentId: 'agent-2' });
    expect(second.status).toBe(409);
    expect(second.body.error?.code).toBe('TM_LEASE_HELD');
    // The same agent keeps working.
    const first = await call(server, 'PUT', path, { key: reg.apiKey, body: JSON.stringify(DECLARATION), contentType: 'application/json' });
    expect(first.status).toBe(200);
  });

  it('hides other tenants rows from the server role by row-level security', async () => {
    await using db = await createDatabase('server');
    const role = `tm_srv_${randomBytes(4).toString('hex')}`;
    await db.query(`create role ${role} login password 'pw'`);
    await db.query(`grant create, connect on database ${db.name} to ${role}`);
    await db.query(`grant usage, create on schema tidemark to ${role}`);
    await db.query(`grant usage, create on schema public to ${role}`); // PostgreSQL 15+ grants no CREATE on public by default
    await db.query(`grant select, insert, update, delete on all tables in schema tidemark to ${role}`);
    const url = new URL(db.url);
    url.username = role;
    url.password = 'pw';
    const adminKey = randomBytes(16).toString('hex');
    const running = await startServer(
      loadServerConfig({ env: {}, flags: { databaseUrl: url.toString(), listen: '127.0.0.1:0', adminKey, logLevel: 'silent' } }),
      silentLogger,
    );
    try {
      const server = { url: running.url, db, adminKey } as unknown as TestServer;
      const register = async (clientId: string) => {
        const res = await fetch(`${running.url}/v1/admin/customers/${clientId}/databases`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ name: clientId }),
        });
        return (await res.json()) as { clientId: string; databaseId: string; apiKey: string };
      };
      for (const clientId of ['alpha', 'beta']) {
        const reg = await register(clientId);
        const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: 'items' });
        expect((await call(server, 'PUT', path, { key: reg.apiKey, body: JSON.stringify(DECLARATION), contentType: 'application/json' })).status).toBe(200);
        expect((await call(server, 'POST', path, { key: reg.apiKey, body: `1\t1\t${clientId}\n`, contentType: 'text/tab-separated-values' })).status).toBe(200);
      }
      const asRole = new pg.Client({ connectionString: url.toString() });
      await asRole.connect();
      try {
        expect((await asRole.query(`select count(*)::int as n from public.items`)).rows).toEqual([{ n: 0 }]);
        await asRole.query('begin');
        await asRole.query(
          `select set_config('tidemark.client_id', 'alpha', true), set_config('tidemark.database_id', (select database_id::text from tidemark.tenant_database where client_id = 'alpha'), true)`,
        );
        expect((await asRole.query(`select name from public.items`)).rows).toEqual([{ name: 'alpha' }]);
        // Writing a row for another tenant is refused by the policy's check.
        await expect(
          asRole.query(`insert into public.items select 'beta', database_id, 1, 7, 'x' from tidemark.tenant_database where client_id = 'beta'`),
        ).rejects.toThrow(/row-level security/);
        await asRole.query('rollback');
      } finally {
        await asRole.end();
      }
      // Other applications (here the superuser) read every tenant, filtered by tidemark_database_id.
      expect(await db.query(`select name from public.items order by name`)).toEqual([{ name: 'alpha' }, { name: 'beta' }]);
    } finally {
      await running.close();
    }
  });

  it('sends the tenant columns from the key, never from the body', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, tidemark_client_id_like text)`);
    await local.query(`insert into items values (1, 'beta')`);
    const reg = await server.register('alpha');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    expect((await agent.agent.tick()).converged).toBe(true);
    expect(await server.db.query(`select tidemark_client_id, tidemark_database_id::text as db from items`)).toEqual([
      { tidemark_client_id: 'alpha', db: reg.databaseId },
    ]);
  });
});
