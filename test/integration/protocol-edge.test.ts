/**
 * Client mistakes that reach the server through the shared protocol code are 4xx, not 500s (issue
 * 14, item 6): names and types are checked by the shared parsers, range bounds against the table's
 * key, before any SQL runs. (The request schemas in src/shared/protocol/ are unit-tested; the
 * server's routes validate with them.)
 */
import { describe, expect, it } from 'vitest';

import { tablePath } from '../../src/shared/protocol.js';
import { startTestServer } from '../support/fixtures.js';

const DECLARATION = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 'name', type: 'text', notNull: false },
  ],
  keyColumns: ['id'],
};

async function call(url: string, method: string, key: string, body?: unknown): Promise<{ status: number; code: string | undefined }> {
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${key}`, 'x-tidemark-agent-id': 'agent-1', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const parsed = (await res.json()) as { error?: { code: string } };
  return { status: res.status, code: parsed.error?.code };
}

describe('client mistakes at the edge', () => {
  it('answers 400 to a NUL or an over-long name, an unsupported type clause and a range bound of the wrong arity', async () => {
    await using server = await startTestServer();
    const reg = await server.register('acme');
    const at = (path: string): string => `${server.url}${path}`;
    const nul = await call(at(`/v1/customers/acme/databases/${reg.databaseId}/tables/${encodeURIComponent('public."a\0b"')}`), 'GET', reg.apiKey);
    expect(nul).toEqual({ status: 400, code: 'TM_TABLE_NAME_INVALID' });
    const long = await call(at(`/v1/customers/acme/databases/${reg.databaseId}/tables/public.${'x'.repeat(64)}`), 'GET', reg.apiKey);
    expect(long).toEqual({ status: 400, code: 'TM_TABLE_NAME_INVALID' });

    const items = { schema: 'public', name: 'items' };
    for (const type of ['text default 1', 'integer generated always as (1) stored', 'character varying(99999999)']) {
      const bad = { ...DECLARATION, columns: [...DECLARATION.columns, { name: 'extra', type, notNull: false }] };
      const r = await call(at(tablePath('acme', reg.databaseId, { schema: 'public', name: 'typed' })), 'PUT', reg.apiKey, bad);
      expect(r.status, type).toBe(400);
    }

    expect((await call(at(tablePath('acme', reg.databaseId, items)), 'PUT', reg.apiKey, DECLARATION)).status).toBe(200);
    const wrongArity = await call(at(`${tablePath('acme', reg.databaseId, items)}/manifest`), 'POST', reg.apiKey, {
      mode: 'hash',
      range: { lower: { version: '0', key: ['1', '2'] }, upper: null },
      level: 'summary',
    });
    expect(wrongArity).toEqual({ status: 400, code: 'TM_REQUEST_INVALID' });
  });
});
