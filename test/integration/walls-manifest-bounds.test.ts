import { describe, expect, it } from 'vitest';

import { startTestServer } from '../support/fixtures.js';
import { call, copyText, declared, json } from './walls-http.js';

const all = { lower: null, upper: null };

describe('manifest answers are bounded', () => {
  it('refuses a buckets request whose answer would exceed the limit, fast and without building it', async () => {
    await using server = await startTestServer();
    const { reg, path } = await declared(server, 'alpha');
    const rows = Array.from({ length: 200 }, (_, i) => `1\t${i}\tx\n`).join('');
    expect((await call(server, 'POST', path, { key: reg.apiKey, ...copyText(rows) })).status).toBe(200);
    const heapBefore = process.memoryUsage().heapUsed;
    // 229 bytes asking for 32 × 2^20 bucket sums (a 358 MB answer before).
    const res = await call(server, 'POST', `${path}/manifest`, {
      key: reg.apiKey,
      ...json({ mode: 'hash', range: all, level: 'buckets', bucketBits: 20, within: { bits: 0, buckets: Array(32).fill(0) } }),
    });
    expect(res.status).toBe(400);
    expect(res.body.error?.code).toBe('TM_REQUEST_INVALID');
    // Refused by the request schema or by the answer bound, whichever sees it first: either names the limit.
    expect(res.body.error?.message).toMatch(/(at most|more than) \d+ buckets/);
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
    expect((await call(server, 'GET', '/healthz')).status).toBe(200);
    // What the agent asks at most still works: 2^10 coarse buckets × 2^10 fine ones each.
    const ok = await call(server, 'POST', `${path}/manifest`, {
      key: reg.apiKey,
      ...json({ mode: 'count', range: all, level: 'buckets', bucketBits: 20, within: { bits: 10, buckets: Array.from({ length: 1024 }, (_, i) => i) } }),
    });
    expect(ok.status).toBe(200);
    expect(ok.body.count).toBe(200);
  });

  it('refuses a rows request past the rows limit, and a buckets request past the server bound, and answers within them', async () => {
    await using server = await startTestServer({ manifestMaxRows: 50, manifestMaxBuckets: 1024 });
    const { reg, path } = await declared(server, 'alpha');
    const rows = Array.from({ length: 51 }, (_, i) => `1\t${i}\tx\n`).join('');
    expect((await call(server, 'POST', path, { key: reg.apiKey, ...copyText(rows) })).status).toBe(200);
    const ask = (upper: number) =>
      call(server, 'POST', `${path}/manifest`, {
        key: reg.apiKey,
        ...json({ mode: 'hash', range: { lower: null, upper: { version: '1', key: [String(upper)] } }, level: 'rows', bucketBits: 0, buckets: [0] }),
      });
    const tooMany = await ask(51);
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error?.message).toMatch(/at most 50 rows \(manifestMaxRows\)/);
    const fits = await ask(50);
    expect(fits.status).toBe(200);
    expect((fits.body.rows as unknown[]).length).toBe(50);
    const buckets = (bucketBits: number) =>
      call(server, 'POST', `${path}/manifest`, { key: reg.apiKey, ...json({ mode: 'count', range: all, level: 'buckets', bucketBits }) });
    const wide = await buckets(11);
    expect(wide.status).toBe(400);
    expect(wide.body.error?.message).toMatch(/at most 1024 buckets \(manifestMaxBuckets\); this request asks for 2048/);
    expect((await buckets(10)).status).toBe(200);
  });
});
