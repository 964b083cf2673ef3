import { gzipSync } from 'node:zlib';

import { describe, expect, it } from 'vitest';

import { startTestServer } from '../support/fixtures.js';
import { call, copyText, declared } from './walls-http.js';

describe('COPY end-of-data marker in an upload body', () => {
  it('refuses a body with a line \\. followed by more rows: 400, nothing written', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    for (const body of ['1\t1\tone\n\\.\n1\t2\ttwo\n', '1\t1\tone\r\n\\.\r\n1\t2\ttwo\r\n', '\\.\n1\t2\ttwo\n', '1\t1\tone\n\\.']) {
      const res = await call(server, 'POST', path, { key: reg.apiKey, ...copyText(body) });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error?.code).toBe('TM_UPLOAD_REJECTED');
      expect(res.body.error?.message).toMatch(/end-of-data/);
    }
    // Compressed, and with the marker split across chunks of the decompressed stream.
    const rows = `${Array.from({ length: 20_000 }, (_, i) => `1\t${i + 10}\tx`).join('\n')}\n\\.\n1\t3\tthree\n`;
    const gz = await call(server, 'POST', path, {
      key: reg.apiKey,
      body: gzipSync(rows),
      contentType: 'text/tab-separated-values',
      headers: { 'content-encoding': 'gzip' },
    });
    expect(gz.status).toBe(400);
    expect(await server.db.query(`select count(*)::int as n from public.items`)).toEqual([{ n: 0 }]);
    expect((await call(server, 'GET', path, { key: reg.apiKey })).body).toMatchObject({ rowCount: 0 });
  });

  it('accepts an escaped backslash-dot as data', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const res = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('1\t1\t\\\\.\n') });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(await server.db.query(`select name from public.items order by id`)).toEqual([{ name: '\\.' }]);
  });
});
