import { describe, expect, it } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import { startTestServer } from '../support/fixtures.js';
import { call, copyText, DECLARATION, declared, json } from './walls-http.js';

const withColumn = (name: string, type: string) => ({
  columns: [...DECLARATION.columns, { name, type, notNull: false }],
  keyColumns: ['id'],
});

describe('client mistakes are 4xx, not 500', () => {
  it('refuses a gzip body that is not gzip with 400', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const res = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('1\t1\tone\n'), headers: { 'content-encoding': 'gzip' } });
    expect(res.status).toBe(400);
    expect(res.body.error?.message).toMatch(/not valid gzip/);
    expect(await server.db.query(`select count(*)::int as n from public.items`)).toEqual([{ n: 0 }]);
  });

  it('refuses column types PostgreSQL rejects in DDL, and system column names, with 400', async () => {
    await using server = await startTestServer();
    const reg = await server.register('alpha');
    const cases: [string, string][] = [
      ['text default 1', 'a'],
      ['integer generated always as (1) stored', 'b'],
      ['character varying(99999999)', 'c'],
      ['text', 'xmax'],
      ['integer', 'ctid'],
    ];
    for (const [i, [type, name]] of cases.entries()) {
      const path = tablePath(reg.clientId, reg.databaseId, { schema: 'public', name: `t${i}` });
      const res = await call(server, 'PUT', path, { key: reg.apiKey, ...json(withColumn(name, type)) });
      expect(res.status, `${name} ${type}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error?.code).toMatch(/TM_COLUMN_TYPE_UNSUPPORTED|TM_REQUEST_INVALID/);
    }
    expect(await server.db.query(`select count(*)::int as n from tidemark.replica_table`)).toEqual([{ n: 0 }]);
  });

  it('creates two tables whose long names share their first 40 characters', async () => {
    await using server = await startTestServer();
    const prefix = 'a_table_name_that_is_long_enough_to_be_cut_by_postgres';
    await declared(server, 'alpha', `${prefix}_one`);
    await declared(server, 'beta', `${prefix}_two`);
    expect(await server.db.query(`select count(*)::int as n from tidemark.replica_table`)).toEqual([{ n: 2 }]);
  });

  it('refuses keys invalid for the key type, wrong key widths and versions beyond bigint with 400', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    expect((await call(server, 'POST', path, { key: reg.apiKey, ...copyText('1\t1\tone\n') })).status).toBe(200);
    const bad = [
      call(server, 'DELETE', path, { key: reg.apiKey, ...json({ keys: [{ key: ['not-an-int'], version: '1' }] }) }),
      call(server, 'DELETE', path, { key: reg.apiKey, ...json({ keys: [{ key: ['1', '2'], version: '1' }] }) }),
      call(server, 'DELETE', path, { key: reg.apiKey, ...json({ aboveVersion: '99999999999999999999' }) }),
      call(server, 'POST', `${path}?settledVersion=99999999999999999999`, { key: reg.apiKey, ...copyText('') }),
      call(server, 'POST', `${path}/manifest`, {
        key: reg.apiKey,
        ...json({ mode: 'count', level: 'summary', range: { lower: { version: '0', key: ['x'] }, upper: null } }),
      }),
      call(server, 'POST', `${path}/manifest`, {
        key: reg.apiKey,
        ...json({ mode: 'count', level: 'summary', range: { lower: { version: '0', key: ['1', '2'] }, upper: null } }),
      }),
    ];
    for (const res of await Promise.all(bad)) {
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error?.code).toBe('TM_REQUEST_INVALID');
    }
    expect((await call(server, 'GET', path, { key: reg.apiKey })).body).toMatchObject({ rowCount: 1, settledVersion: '0' });
  });
});
