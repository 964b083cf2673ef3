/**
 * An interrupted first sync goes on where it stopped (issue 9.4). A `tidemark sync --once` child
 * process (dist/cli/main.js, built by `npm run build`) is killed with SIGKILL once the server has
 * applied its fourth batch and before the agent hears the answer (a proxy decides, by counting
 * requests, not by time). The next run sends what is left plus at most the batches that were in
 * flight again: one with `batch.firstSyncInFlight: 1`, two with 2 (the default).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';
import { describe, expect, it } from 'vitest';

import { PgTableTracking } from '../../src/agent/local/table-tracking.js';
import { type CountingProxy, rowsReceived, startCountingProxy } from '../support/counting-proxy.js';
import { createDatabase, dumpRows, startTestServer, type TestDatabase, type TestServer } from '../support/fixtures.js';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');
const TOTAL = 2000;
const BATCH_ROWS = 100;

function sync(config: string): { child: ChildProcess; exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, 'sync', '--once', '--config', config], {
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString('utf8');
  });
  child.stdout?.resume();
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, exit };
}

/** Rows the server received through the proxy so far. */
const rowsSent = (proxy: CountingProxy): number => proxy.exchanges.reduce((n, e) => n + rowsReceived(e), 0);

/** TOTAL rows tracked locally, and an agent config file for them through the proxy with `firstSyncInFlight`. */
async function trackedThroughProxy(local: TestDatabase, server: TestServer, proxy: CountingProxy, firstSyncInFlight: number): Promise<string> {
  await local.query(`create table items (id int primary key, name text not null)`);
  await local.query(`insert into items select i, 'item ' || i from generate_series(1, ${TOTAL}) i`);
  const pool = new pg.Pool({ connectionString: local.url, max: 2 });
  try {
    await new PgTableTracking(pool).track('items');
  } finally {
    await pool.end();
  }
  const reg = await server.register('acme');
  const config = join(tmpdir(), `tidemark-interrupted-${firstSyncInFlight}-${reg.databaseId}.yaml`);
  writeFileSync(
    config,
    [
      `databaseUrl: ${local.url}`,
      `serverUrl: ${proxy.url}`,
      `clientId: ${reg.clientId}`,
      `databaseId: ${reg.databaseId}`,
      `apiKey: ${reg.apiKey}`,
      'logLevel: silent',
      `batch: { minRows: ${BATCH_ROWS}, maxRows: ${BATCH_ROWS}, firstSyncInFlight: ${firstSyncInFlight} }`,
    ].join('\n'),
  );
  return config;
}

/**
 * Run 1: killed once the server has applied its 4th batch, before the agent hears the answer (and
 * every later answer is lost too). Returns the rows the server received meanwhile.
 */
async function killedAfterFourthBatch(config: string, proxy: CountingProxy): Promise<number> {
  const first = sync(config);
  let batches = 0;
  proxy.onAnswer = async (e) => {
    if (rowsReceived(e) === 0) return 'pass';
    batches++;
    if (batches < 4) return 'pass';
    first.child.kill('SIGKILL');
    await first.exit;
    return 'drop';
  };
  const killed = await first.exit;
  expect(killed.signal).toBe('SIGKILL');
  proxy.onAnswer = null;
  return rowsSent(proxy);
}

/** Run 2, to its end: it converges, the replica equals the local table, no resume point is left. */
async function secondRunConverges(config: string, local: TestDatabase, server: TestServer): Promise<void> {
  const second = await sync(config).exit;
  expect(second.code, second.stderr).toBe(0);
  expect(await dumpRows(server.db, 'public.items')).toEqual(await dumpRows(local, 'public.items'));
  expect(await local.query(`select upload_resume from tidemark.table_state`)).toEqual([{ upload_resume: null }]);
}

// Two tidemark processes one after the other: on a busy machine each start takes seconds.
describe('interrupted first sync', { timeout: 300_000 }, () => {
  it('goes on from the last applied batch after the sync process is killed, sending at most one batch again', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await using proxy = await startCountingProxy(server.url);
    // One request in flight (a first sync keeps batch.firstSyncInFlight, 2 by default): at most one batch is sent again.
    const config = await trackedThroughProxy(local, server, proxy, 1);

    const sentFirst = await killedAfterFourthBatch(config, proxy);
    expect(sentFirst).toBe(4 * BATCH_ROWS);
    expect(await server.db.query(`select count(*)::int as n from items`)).toEqual([{ n: 4 * BATCH_ROWS }]);

    // Run 2: goes on from the third batch's last row (the fourth is sent again, nothing before it).
    await secondRunConverges(config, local, server);
    const received = rowsSent(proxy);
    expect(received).toBeLessThanOrEqual(TOTAL + BATCH_ROWS);
    expect(received - sentFirst).toBeLessThanOrEqual(TOTAL - 3 * BATCH_ROWS);
  });

  it('goes on from the last batch through with two requests in flight, sending at most the two in flight again', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await using proxy = await startCountingProxy(server.url);
    const config = await trackedThroughProxy(local, server, proxy, 2);

    const sentFirst = await killedAfterFourthBatch(config, proxy);
    const [held] = await server.db.query<{ n: number }>(`select count(*)::int as n from items`);
    const onServer = held?.n ?? 0;
    expect(onServer).toBeGreaterThanOrEqual(4 * BATCH_ROWS);

    // Run 2: what the server lacks, plus at most the two batches that were in flight again.
    await secondRunConverges(config, local, server);
    const sentSecond = rowsSent(proxy) - sentFirst;
    expect(sentSecond).toBeGreaterThanOrEqual(TOTAL - onServer);
    expect(sentSecond - (TOTAL - onServer)).toBeLessThanOrEqual(2 * BATCH_ROWS);
  });
});
