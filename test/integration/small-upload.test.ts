/**
 * Small uploads are staged without a temporary table (src/server/small-batch.ts). The same body
 * sent small (parsed by the server) and gzip-compressed (always COPY) must store the same values,
 * and be refused alike.
 */
import { gzipSync } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { StatementCounter } from '../../src/server/statement-counter.js';
import type { TestServer } from '../support/fixtures.js';
import { startTestServer } from '../support/fixtures.js';
import { call, declared, json } from './walls-http.js';

const KINDS = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 't', type: 'text', notNull: false },
    { name: 'b', type: 'bytea', notNull: false },
    { name: 'n', type: 'numeric(10,3)', notNull: false },
    { name: 'ts', type: 'timestamp(3) without time zone', notNull: false },
    { name: 'tz', type: 'timestamp with time zone', notNull: false },
    { name: 'f', type: 'double precision', notNull: false },
    { name: 'j', type: 'jsonb', notNull: false },
    { name: 'ia', type: 'integer[]', notNull: false },
    { name: 'ta', type: 'text[]', notNull: false },
    { name: 'iv', type: 'interval', notNull: false },
    { name: 'u', type: 'uuid', notNull: false },
    { name: 'ok', type: 'boolean', notNull: false },
  ],
  keyColumns: ['id'],
};

/** A value as COPY text writes it. */
function esc(v: string | null): string {
  if (v === null) return '\\N';
  return v.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

const ROWS: (string | null)[][] = [
  [
    '1',
    '1',
    'tab\there, line\nthere, back\\slash, \\N, quote " and \'',
    '\\x00ff10',
    '1.23456',
    '2026-01-02 03:04:05.6789',
    '2026-01-02 03:04:05.678+02',
    '0.1',
    '{"k": "v\\n", "n": [1, 2.50]}',
    '{1,2,NULL}',
    '{"a b","c\\\\d",NULL,"NULL"}',
    '1 day 02:03:04',
    'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
    't',
  ],
  ['2', '2', '', null, null, null, null, null, null, null, null, null, null, null],
  ['3', '3', 'ü€😀 ñ', '\\x', '-0', 'infinity', '-infinity', 'NaN', '"string"', '{}', '{}', '-1 mons', '00000000-0000-0000-0000-000000000000', 'false'],
];
const BODY = `${ROWS.map((r) => r.map(esc).join('\t')).join('\n')}\n`;
// Raw escapes the agent would not write but COPY reads: octal and hex bytes (é), an escaped letter.
const RAW_ESCAPES = '4\t4\t\\303\\251\\xc3\\xa9\\q\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n';

async function rowsOf(server: TestServer, clientId: string): Promise<unknown[]> {
  const rows = await server.db.query<{ r: unknown }>(
    `select to_jsonb(k) - 'tidemark_client_id' - 'tidemark_database_id' as r from public.kinds k where tidemark_client_id = $1 order by id`,
    [clientId],
  );
  return rows.map((x) => x.r);
}

describe('small uploads', () => {
  it('store exactly what COPY stores, for every kind of value and escape, without a staging table', async () => {
    const counter = new StatementCounter(true);
    await using server = await startTestServer({}, { statements: counter });
    const small = await declared(server, 'small', 'kinds', KINDS);
    const copied = await declared(server, 'copied', 'kinds', KINDS);

    counter.reset();
    const a = await call(server, 'POST', small.path, { key: small.reg.apiKey, body: BODY + RAW_ESCAPES, contentType: 'text/tab-separated-values' });
    expect(a.status, JSON.stringify(a.body)).toBe(200);
    expect(counter.texts.filter((t) => /create temp table|copy /i.test(t))).toEqual([]);
    const b = await call(server, 'POST', copied.path, {
      key: copied.reg.apiKey,
      body: gzipSync(BODY + RAW_ESCAPES),
      contentType: 'text/tab-separated-values',
      headers: { 'content-encoding': 'gzip' },
    });
    expect(b.status, JSON.stringify(b.body)).toBe(200);
    expect(a.body).toMatchObject({ rowsReceived: 4, rowsInserted: 4, rowsUpdated: 0 });
    expect(b.body).toMatchObject({ rowsReceived: 4, rowsInserted: 4, rowsUpdated: 0 });

    const stored = await rowsOf(server, 'small');
    expect(stored).toEqual(await rowsOf(server, 'copied'));
    expect(stored).toHaveLength(4);
    expect(stored[0]).toMatchObject({ t: 'tab\there, line\nthere, back\\slash, \\N, quote " and \'', b: '\\x00ff10', n: 1.235, ia: [1, 2, null] });
    expect(stored[3]).toMatchObject({ t: 'ééq' });

    // Again, as upserts of newer versions: the same on both sides.
    const newer = BODY.replace(/^1\t/gm, '5\t').replace(/^2\t/gm, '5\t').replace(/^3\t/gm, '5\t');
    expect((await call(server, 'POST', small.path, { key: small.reg.apiKey, body: newer, contentType: 'text/tab-separated-values' })).body).toMatchObject({
      rowsUpdated: 3,
    });
    const c = await call(server, 'POST', copied.path, {
      key: copied.reg.apiKey,
      body: gzipSync(newer),
      contentType: 'text/tab-separated-values',
      headers: { 'content-encoding': 'gzip' },
    });
    expect(c.body).toMatchObject({ rowsUpdated: 3 });
    expect(await rowsOf(server, 'small')).toEqual(await rowsOf(server, 'copied'));
  });

  it('are refused as COPY refuses them, with nothing written, and take what COPY takes', async () => {
    await using server = await startTestServer();
    const small = await declared(server, 'small', 'kinds', KINDS);
    const copied = await declared(server, 'copied', 'kinds', KINDS);
    const nulls = Array.from({ length: 12 }, () => '\\N').join('\t');
    const cases: { body: string; status: number }[] = [
      { body: `1\tnot-a-number\t${nulls}\n`, status: 400 }, // a value the type refuses
      { body: `1\t1\t${nulls}\textra\n`, status: 400 }, // too many fields
      { body: `1\t1\n`, status: 400 }, // too few
      { body: `1\t1\t${nulls}\r\n2\t2\t${nulls}\r\n`, status: 200 }, // CRLF lines: COPY takes them
    ];
    for (const { body, status } of cases) {
      const a = await call(server, 'POST', small.path, { key: small.reg.apiKey, body, contentType: 'text/tab-separated-values' });
      const b = await call(server, 'POST', copied.path, {
        key: copied.reg.apiKey,
        body: gzipSync(body),
        contentType: 'text/tab-separated-values',
        headers: { 'content-encoding': 'gzip' },
      });
      expect([a.status, b.status], JSON.stringify({ body, a: a.body, b: b.body })).toEqual([status, status]);
      if (status === 400) expect([a.body.error?.code, b.body.error?.code]).toEqual(['TM_UPLOAD_REJECTED', 'TM_UPLOAD_REJECTED']);
    }
    expect(await rowsOf(server, 'small')).toEqual(await rowsOf(server, 'copied'));
    expect(await rowsOf(server, 'small')).toHaveLength(2);
    // A declaration through JSON is still what the tests above declared.
    expect((await call(server, 'PUT', small.path, { key: small.reg.apiKey, ...json(KINDS) })).status).toBe(200);
  });
});
