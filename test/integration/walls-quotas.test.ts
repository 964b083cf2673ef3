import { request } from 'node:http';

import { describe, expect, it } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import { startTestServer } from '../support/fixtures.js';
import { call, DECLARATION, declared, json } from './walls-http.js';

describe('per-tenant quotas', () => {
  it('refuses a table past tenantMaxTables and a table wider than tenantMaxColumns with 403 naming the quota', async () => {
    await using server = await startTestServer({ tenantMaxTables: 2, tenantMaxColumns: 4 });
    const { reg } = await declared(server, 'alpha', 't1');
    await declared(server, 'beta', 't1'); // another tenant has its own count
    const put = (name: string, declaration: unknown) =>
      call(server, 'PUT', tablePath(reg.clientId, reg.databaseId, { schema: 'public', name }), { key: reg.apiKey, ...json(declaration) });
    expect((await put('t2', DECLARATION)).status).toBe(200);
    const third = await put('t3', DECLARATION);
    expect(third.status).toBe(403);
    expect(third.body.error?.message).toMatch(/quota tenantMaxTables: .* at most 2 tables/);
    expect((await put('t1', DECLARATION)).status).toBe(200); // declaring again what it has is no new table
    const wide = await put('t1', {
      columns: [...DECLARATION.columns, { name: 'a', type: 'text', notNull: false }, { name: 'b', type: 'text', notNull: false }],
      keyColumns: ['id'],
    });
    expect(wide.status).toBe(403);
    expect(wide.body.error?.message).toMatch(/quota tenantMaxColumns: .* at most 4 columns; this one declares 5/);
    expect(await server.db.query(`select count(*)::int as n from pg_tables where tablename = 't3'`)).toEqual([{ n: 0 }]);
  });

  it('answers 429 past tenantMaxConcurrentRequests, for that tenant only, and frees the slot with the answer', async () => {
    await using server = await startTestServer({ tenantMaxConcurrentRequests: 1 });
    const a = await declared(server, 'alpha');
    const b = await declared(server, 'beta');
    // An upload the test holds open occupies alpha's only slot.
    const held = request(new URL(`${server.url}${a.path}`), {
      method: 'POST',
      headers: { authorization: `Bearer ${a.reg.apiKey}`, 'content-type': 'text/tab-separated-values', 'x-tidemark-agent-id': 'agent-1' },
    });
    const answered = new Promise<number>((resolve, reject) => {
      held.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      held.on('error', reject);
    });
    held.write('1\t1\tone\n');
    for (;;) {
      const copying = await server.db.query(
        `select 1 from pg_stat_activity where datname = current_database() and application_name = 'tidemark-server' and query like 'copy %'`,
      );
      if (copying.length) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const second = await call(server, 'GET', a.path, { key: a.reg.apiKey });
    expect(second.status).toBe(429);
    expect(second.headers.get('retry-after')).toBe('1');
    expect(second.body.error?.message).toMatch(/quota tenantMaxConcurrentRequests/);
    expect((await call(server, 'GET', b.path, { key: b.reg.apiKey })).status).toBe(200);
    held.end('1\t2\ttwo\n');
    expect(await answered).toBe(200);
    expect((await call(server, 'GET', a.path, { key: a.reg.apiKey })).body).toMatchObject({ rowCount: 2 });
  });
});
