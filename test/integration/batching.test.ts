/**
 * Batch tuning end to end: a real server that rejects bodies above N bytes (413), a real agent that
 * starts far above N (initialBytes 4 MiB), and the batch history it records in schema tidemark.
 */
import { describe, expect, it } from 'vitest';

import { createDatabase, dumpRows, startTestAgent, startTestServer, type TestDatabase } from '../support/fixtures.js';

interface HistoryRow {
  rows: number;
  bytes: number;
  outcome: string;
  error_class: string | null;
}

async function history(local: TestDatabase, table = 'items'): Promise<HistoryRow[]> {
  return local.query<HistoryRow>(
    `select rows, bytes::int as bytes, outcome, error_class from tidemark.batch_history where schema_name = 'public' and table_name = $1::text order by id`,
    [table],
  );
}

const LIMIT_BYTES = 64 * 1024;

describe('batch tuning', () => {
  it('settles just below a server body limit and finishes the table: all rows, converged, nothing quarantined', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ maxBodyBytes: LIMIT_BYTES });
    await local.query(`create table items (id int primary key, payload text not null)`);
    // About 110 bytes of COPY text a row, 2.2 MB in all: ~35 batches at the limit.
    await local.query(`insert into items select i, repeat(md5(i::text), 3) from generate_series(1, 20000) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');

    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.tables[0]?.error).toBeUndefined();
    expect(tick.converged).toBe(true);
    expect(tick.tables[0]?.quarantined).toBe(0);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
    const [status] = await agent.agent.status();
    expect(status?.quarantined).toEqual([]);

    const h = await history(local);
    const ok = h.filter((b) => b.outcome === 'ok');
    const failed = h.filter((b) => b.outcome !== 'ok');
    // Every request the server took fits the limit; every failure is a 413.
    expect(ok.every((b) => b.bytes <= LIMIT_BYTES)).toBe(true);
    expect(failed.every((b) => b.error_class === 'too_large')).toBe(true);
    // The whole table (2.2 MB) first, then halving down to the limit (5 failures), bisection between
    // the last good size and the smallest failed one until within 5% (at most 5), and a probe above
    // the limit after 8 good batches and again after 16 more (2).
    expect(failed.length).toBeLessThanOrEqual(13);
    // Settled: the last ten full batches (the table's tail aside) are within [50%, 100%] of the limit.
    const settled = ok.slice(-11, -1);
    expect(settled.every((b) => b.bytes >= LIMIT_BYTES / 2)).toBe(true);
    const gauge = (await agent.metrics.batchSizeBytes.get()).values[0]?.value ?? 0;
    expect(gauge).toBeGreaterThanOrEqual(LIMIT_BYTES / 2);
    expect(gauge).toBeLessThanOrEqual(LIMIT_BYTES * 1.25); // at most a probe above it
    const rowsUp = ok.reduce((n, b) => n + b.rows, 0);
    expect(rowsUp).toBe(20000);
    console.log(
      `64 KiB limit: ${h.length} requests, ${failed.length} failed (413), last full batches ${settled.map((b) => b.bytes).join(' ')} bytes; tuned limit ${gauge} bytes`,
    );

    // A new agent (a restart) starts from the recorded history: below the limit at once.
    await local.query(`insert into items select i, repeat(md5(i::text), 3) from generate_series(20001, 30000) i`);
    const before = h.length;
    await using restarted = await startTestAgent(local, server, reg);
    const second = await restarted.agent.tick({ checkCount: true });
    expect(second.converged).toBe(true);
    const h2 = (await history(local)).slice(before);
    expect(h2[0]?.outcome).toBe('ok');
    expect(h2[0]?.bytes).toBeLessThanOrEqual(LIMIT_BYTES);
    expect(h2[0]?.bytes).toBeGreaterThanOrEqual(LIMIT_BYTES / 2);
    const failed2 = h2.filter((b) => b.outcome !== 'ok').length;
    console.log(`after a restart: ${h2.length} requests, ${failed2} failed, the first of ${h2[0]?.bytes} bytes`);
    expect(failed2).toBeLessThanOrEqual(3);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('cuts batches at row boundaries within the tuned bytes, whatever the size of the COPY chunks', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer({ maxBodyBytes: 16 * 1024 });
    await local.query(`create table items (id int primary key, payload text not null)`);
    // Rows of very different widths: 20 bytes to 3 kB.
    await local.query(`insert into items select i, repeat('x', (i * 7919) % 3000) from generate_series(1, 1500) i`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg, { batch: { minBytes: 1024, initialBytes: 8 * 1024 } });
    await agent.local.tracking.track('items');
    const tick = await agent.agent.tick({ checkCount: true });
    expect(tick.converged).toBe(true);
    const h = await history(local);
    const failed = h.filter((b) => b.outcome !== 'ok');
    // Starting below the limit, a batch goes above it only as a step of growth or a probe: by at
    // most half the limit (a batch cut at the limit plus a COPY chunk would overshoot by up to 64 kB).
    expect(failed.every((b) => b.bytes <= 1.5 * 16 * 1024)).toBe(true);
    expect(failed.length).toBeLessThanOrEqual(Math.ceil(h.length / 8));
    console.log(`16 KiB limit, rows of 20 B to 3 kB: ${h.length} requests, ${failed.length} failed`);
    expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  });

  it('keeps the batch history bounded: each upload prunes the table to its newest 500 batches', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key)`);
    await local.query(`insert into items select generate_series(1, 100)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg);
    await agent.local.tracking.track('items');
    // 700 old batches of this table and 600 of another one.
    await local.query(`insert into tidemark.batch_history (schema_name, table_name, rows, bytes, duration_seconds, outcome)
      select 'public', t, 1, 10, 0.01, 'ok' from (values ('items', 700), ('other', 600)) v(t, n), generate_series(1, n)`);
    const tick = await agent.agent.tick();
    expect(tick.converged).toBe(true);
    const counts = await local.query<{ table_name: string; n: number }>(
      `select table_name, count(*)::int as n from tidemark.batch_history group by 1 order by 1`,
    );
    expect(counts).toEqual([
      { table_name: 'items', n: 500 },
      { table_name: 'other', n: 600 },
    ]);
    // The newest batch (the real upload of 100 rows) is kept.
    const [last] = await local.query<{ rows: number }>(`select rows from tidemark.batch_history where table_name = 'items' order by id desc limit 1`);
    expect(last?.rows).toBe(100);
  });
});
