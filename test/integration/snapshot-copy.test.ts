/**
 * A COPY out of a run's snapshot that its reader leaves before the end (the run budget stops an
 * upload, an upload fails): the snapshot must still answer, or say it cannot, and close — never
 * wait for ever behind the rest of the COPY (a run hung so under load).
 */
import { describe, expect, it } from 'vitest';

import { pgLocalStores } from '../../src/agent/local/local-stores.js';
import { installStateSchema } from '../../src/agent/local/state-schema.js';
import { createDatabase, type TestDatabase } from '../support/fixtures.js';

const ROWS = 60_000; // ~12 MB of COPY text: far more than one chunk, so the COPY is unfinished when left

async function bigTable(local: TestDatabase) {
  await local.query(`create table items (id int primary key, pad text not null)`);
  await local.query(`insert into items select i, repeat('x', 200) from generate_series(1, ${ROWS}) i`);
  await installStateSchema(local.pool);
  const stores = pgLocalStores(local.pool);
  return { stores, table: await stores.tracking.track('items') };
}

// A hang is the failure this file guards against: a bounded timeout turns it into a failure
// (passing takes a second or two, however busy the machine).
describe('a COPY left before its end', { timeout: 90_000 }, () => {
  it('is read to its end by the next query, which then answers from the same snapshot', async () => {
    await using local = await createDatabase('local');
    const { stores, table } = await bigTable(local);
    const snap = await stores.openSnapshot(table);
    try {
      const copy = await snap.copyOut({ lower: null, upper: null });
      for await (const _chunk of copy.iterator({ destroyOnReturn: false })) break;
      await local.query(`delete from items where id <= 10`); // not visible to the snapshot
      expect(await snap.count()).toBe(ROWS);
    } finally {
      await snap.close();
    }
    expect(await local.query(`select count(*)::int as n from items`)).toEqual([{ n: ROWS - 10 }]);
  });

  it('closes without waiting when the reader destroyed the stream, and a query says the snapshot is unusable', async () => {
    await using local = await createDatabase('local');
    const { stores, table } = await bigTable(local);
    const snap = await stores.openSnapshot(table);
    const copy = await snap.copyOut({ lower: null, upper: null });
    for await (const _chunk of copy) break; // the default iterator destroys the stream
    await expect(snap.count()).rejects.toThrow(/abandoned/);
    await snap.close();
    // The pool is whole: the discarded connection was replaced.
    expect(await local.query(`select count(*)::int as n from items`)).toEqual([{ n: ROWS }]);
  });

  it('is discarded by close() when nothing else was asked', async () => {
    await using local = await createDatabase('local');
    const { stores, table } = await bigTable(local);
    const snap = await stores.openSnapshot(table);
    const keys = Array.from({ length: 20_000 }, (_, i) => [String(i + 1)]);
    const copy = await snap.copyOutKeys(keys);
    for await (const _chunk of copy.iterator({ destroyOnReturn: false })) break;
    await snap.close();
    expect(local.pool.totalCount).toBeLessThanOrEqual(4);
    expect(await local.query(`select 1 as one`)).toEqual([{ one: 1 }]);
  });
});
