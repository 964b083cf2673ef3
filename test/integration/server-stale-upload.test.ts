import { describe, expect, it } from 'vitest';

import { startTestServer } from '../support/fixtures.js';
import { call, copyText, declared, metricValue } from './walls-http.js';

describe('late or replayed uploads', () => {
  it('never let an older version replace a newer row, and count the stale rows', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const older = copyText('10\t1\told\n10\t2\ttwo\n');
    expect((await call(server, 'POST', path, { key: reg.apiKey, ...older })).status).toBe(200);
    const newer = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('11\t1\tnew\n') });
    expect(newer.body).toMatchObject({ rowsReceived: 1, rowsInserted: 0, rowsUpdated: 1 });

    // The first batch again (held by a proxy, replayed after a restart): row 1 keeps version 11.
    const replay = await call(server, 'POST', path, { key: reg.apiKey, ...older });
    expect(replay.status).toBe(200);
    expect(replay.body).toMatchObject({ rowsReceived: 2, rowsInserted: 0, rowsUpdated: 1 });
    expect(await server.db.query(`select id, tidemark_version::text as v, name from public.items order by id`)).toEqual([
      { id: 1, v: '11', name: 'new' },
      { id: 2, v: '10', name: 'two' },
    ]);
    expect(await metricValue(server, 'tidemark_server_stale_rows_total')).toBe(1);

    // Only stale rows: nothing updated, the O(1) figures still match the rows.
    const stale = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('9\t1\tolder\n') });
    expect(stale.body).toMatchObject({ rowsReceived: 1, rowsInserted: 0, rowsUpdated: 0 });
    expect(stale.body.summary).toMatchObject({ rowCount: 2, maxVersion: '11' });
    expect(await metricValue(server, 'tidemark_server_stale_rows_total')).toBe(2);
  });

  it('applies the newer request at equal versions', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    await call(server, 'POST', path, { key: reg.apiKey, ...copyText('5\t1\tfirst\n') });
    const again = await call(server, 'POST', path, { key: reg.apiKey, ...copyText('5\t1\tsecond\n') });
    expect(again.body).toMatchObject({ rowsReceived: 1, rowsUpdated: 1 });
    expect(await server.db.query(`select name from public.items`)).toEqual([{ name: 'second' }]);
    expect(await metricValue(server, 'tidemark_server_stale_rows_total')).toBe(0);
  });
});
