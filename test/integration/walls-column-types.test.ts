import { describe, expect, it } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import { startTestServer } from '../support/fixtures.js';
import { call, DECLARATION, json } from './walls-http.js';

const withType = (type: string) => ({
  columns: [...DECLARATION.columns, { name: 'extra', type, notNull: false }],
  keyColumns: ['id'],
});

describe('declared column types and schemas stay out of the server', () => {
  it('refuses row types of relations and system types, accepts built-in data types and arrays', async () => {
    await using server = await startTestServer();
    const reg = await server.register('alpha');
    const put = (name: string, type: string) =>
      call(server, 'PUT', tablePath(reg.clientId, reg.databaseId, { schema: 'public', name }), { key: reg.apiKey, ...json(withType(type)) });
    const refused = ['tidemark.tenant_database', 'pg_authid', 'pg_catalog.pg_authid', 'regclass', 'regrole', 'regtype[]', 'pg_lsn', 'txid_snapshot'];
    for (const [i, type] of refused.entries()) {
      const res = await put(`r${i}`, type);
      expect(res.status, type).toBe(400);
      // The request schema may refuse a name's form first (TM_REQUEST_INVALID); the server refuses what resolves.
      expect(res.body.error?.code).toMatch(/TM_COLUMN_TYPE_UNSUPPORTED|TM_REQUEST_INVALID/);
    }
    const accepted = ['numeric(10,2)', 'character varying(20)', 'timestamp(3) with time zone', 'integer[]', 'int4range', 'jsonb', 'point', 'uuid'];
    for (const [i, type] of accepted.entries()) expect((await put(`a${i}`, type)).status, type).toBe(200);
    expect(await server.db.query(`select count(*)::int as n from tidemark.replica_table`)).toEqual([{ n: accepted.length }]);
  });

  it('accepts an enum, domain or extension type only when the admin admits it', async () => {
    await using server = await startTestServer({ admittedTypes: ['public.mood'] });
    await server.db.query(`create type public.mood as enum ('sad', 'happy')`);
    await server.db.query(`create type public.colour as enum ('red')`);
    await server.db.query(`create domain public.positive as integer check (value > 0)`);
    const reg = await server.register('alpha');
    const put = (name: string, type: string) =>
      call(server, 'PUT', tablePath(reg.clientId, reg.databaseId, { schema: 'public', name }), { key: reg.apiKey, ...json(withType(type)) });
    expect((await put('a', 'public.mood')).status).toBe(200);
    expect((await put('b', 'public.mood[]')).status).toBe(200);
    const colour = await put('c', 'public.colour');
    expect(colour.status).toBe(400);
    expect(colour.body.error?.message).toMatch(/not admitted/);
    expect((await put('d', 'public.positive')).status).toBe(400);
  });

  it("refuses schemas named like the server's own", async () => {
    await using server = await startTestServer();
    const reg = await server.register('alpha');
    const role = (await server.db.query<{ role: string }>(`select current_user as role`))[0]?.role ?? '';
    for (const schema of ['tidemark', 'Tidemark', 'pg_catalog', 'PG_temp_1', 'Pg_x', 'information_schema', role]) {
      const res = await call(server, 'PUT', tablePath(reg.clientId, reg.databaseId, { schema, name: 'items' }), { key: reg.apiKey, ...json(DECLARATION) });
      expect(res.status, schema).toBe(400);
      expect(res.body.error?.message).toMatch(/is reserved/);
    }
    expect(await server.db.query(`select nspname from pg_namespace where nspname ilike 'tidemark' or nspname ilike 'pg_x'`)).toEqual([{ nspname: 'tidemark' }]);
  });
});
