/**
 * Part `offline`: offline sites' bundles beside the online sync of the same data, in the same run
 * (README, Offline sites). One local table (`bench_items`, N rows; N = TIDEMARK_BENCH_OFFLINE_ROWS,
 * else --rows), one cloud database:
 *   1. online: `tidemark sync --once` from empty, then the same after 10k changes (8k scattered
 *      updates, 1k deletes, 1k inserts);
 *   2. the cloud emptied, a fresh server child: `tidemark export` (no receipt) and `tidemark import`,
 *      then another 10k changes, `export --receipt` and `import`.
 * Figures: bundle bytes against the COPY bytes the online runs uploaded, export + import wall time
 * against the online run's, peak RSS (VmHWM) of the export, of the import command and of the server
 * child that applied the bundles. The cloud copy is checked equal to the local table after each step.
 */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { generateItems } from './engine-bench.js';
import {
  agentArgs,
  type BenchOptions,
  fingerprint,
  itemsInsert,
  log,
  mb,
  PROFILE_DIR,
  ProcSampler,
  type Results,
  rate,
  runCli,
  type ServerChild,
  StatementLog,
  secs,
  spawnCli,
  sql,
  startServerChild,
  summariseProfile,
} from './support.js';

const PART = 'offline';
const ROWS_ENV = 'TIDEMARK_BENCH_OFFLINE_ROWS';

interface Measured {
  seconds: number;
  peakRssBytes: number;
  stdout: string;
}

/** A CLI command to its end, its wall time and peak RSS sampled. */
async function measured(args: string[]): Promise<Measured> {
  const run = spawnCli(args);
  const sampler = new ProcSampler(run.pid);
  const r = await run.done;
  sampler.stop();
  if (r.code !== 0) throw new Error(`tidemark ${args[0]} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return { seconds: r.seconds, peakRssBytes: sampler.peakRssBytes, stdout: r.stdout.trim() };
}

/** 10k changes of round `round` (1, 2, ...): 8k scattered updates, 1k deletes, 1k inserts above the table. */
async function applyChanges(url: string, rows: number, round: number): Promise<string> {
  const [u] = await sql<{ n: number }>(
    url,
    `with t as (update bench_items set amount = amount + 1, note = 'updated ' || id
                 where id in (select 1 + (((i + $2::bigint) * 829348951) % $1::bigint) from generate_series(1, 8000) i) returning 1)
     select count(*)::int as n from t`,
    [rows, (round - 1) * 8000],
  );
  const [d] = await sql<{ n: number }>(
    url,
    `with t as (delete from bench_items
                 where id in (select 1 + (((i + $2::bigint) * 15485863) % $1::bigint) from generate_series(1, 1000) i) returning 1)
     select count(*)::int as n from t`,
    [rows, Math.floor(rows / 2) + (round - 1) * 1000],
  );
  const lo = rows + (round - 1) * 1000 + 1;
  await sql(url, itemsInsert('bench_items', lo, lo + 999));
  await sql(url, 'checkpoint');
  return `${u?.n ?? 0} updated, ${d?.n ?? 0} deleted, 1000 inserted`;
}

/** COPY bytes the online runs uploaded since the history was last cleared (tidemark.batch_history). */
async function uploadedBytes(localUrl: string): Promise<number> {
  const [r] = await sql<{ bytes: string | null }>(localUrl, `select sum(bytes)::text as bytes from tidemark.batch_history where outcome = 'ok'`);
  return Number(r?.bytes ?? 0);
}

export async function offlineBench(options: BenchOptions, results: Results): Promise<void> {
  const fromEnv = process.env[ROWS_ENV];
  const rows = fromEnv ? Number(fromEnv) : options.rows;
  if (!Number.isInteger(rows) || rows < 1000) throw new Error(`${ROWS_ENV} must be an integer >= 1000 (got ${JSON.stringify(fromEnv)})`);
  log(`offline: starting an embedded PostgreSQL (${rows.toLocaleString('en-US')} rows)`);
  const statements = new StatementLog();
  const cluster = await startEmbeddedCluster({ onLog: statements.onLog });
  const work = mkdtempSync(join(tmpdir(), 'tidemark-bench-offline-'));
  const servers: ServerChild[] = [];
  try {
    await cluster.createDatabase('bench_local');
    await cluster.createDatabase('bench_cloud');
    const localUrl = cluster.url('bench_local');
    const cloudUrl = cluster.url('bench_cloud');
    const t0 = performance.now();
    await generateItems(localUrl, rows);
    await runCli(['track', 'public.bench_items', '--database', localUrl]);
    await sql(localUrl, 'vacuum analyze bench_items');
    log(`offline: generated and tracked ${rows} rows in ${secs((performance.now() - t0) / 1000)}`);

    const first = await startServerChild(cloudUrl);
    servers.push(first);
    const online = await first.register('acme', 'online site');
    const offline = await first.register('acme', 'offline site');
    const equal = async (reg: RegisterResult, what: string): Promise<void> => {
      const local = await fingerprint(localUrl, 'bench_items');
      const cloud = await fingerprint(cloudUrl, 'public.bench_items', `tidemark_database_id = '${reg.databaseId}'`);
      if (local !== cloud) results.fail(`offline: cloud differs from local after ${what} (${local} vs ${cloud})`);
    };

    // 1. Online, for the baseline.
    const config = join(work, 'agent.yaml');
    writeFileSync(config, 'runBudgetSeconds: 3600\n'); // one run for the whole first sync, as the engine part
    const syncArgs = ['sync', '--once', ...agentArgs(localUrl, first.url, online), '--config', config];
    await sql(localUrl, 'checkpoint');
    const sync1 = await measured(syncArgs);
    const sync1Bytes = await uploadedBytes(localUrl);
    log(
      `offline: online first sync ${secs(sync1.seconds)} (${rate(rows, sync1.seconds)}), ${mb(sync1Bytes)} uploaded, agent peak RSS ${mb(sync1.peakRssBytes)}`,
    );
    await equal(online, 'the online first sync');
    log(`offline: changes for the online run: ${await applyChanges(localUrl, rows, 1)}`);
    await sql(localUrl, 'delete from tidemark.batch_history');
    const sync2 = await measured(syncArgs);
    const sync2Bytes = await uploadedBytes(localUrl);
    log(`offline: online incremental sync ${secs(sync2.seconds)}, ${mb(sync2Bytes)} uploaded`);
    await equal(online, 'the online incremental sync');

    // 2. Offline, on an emptied cloud table and a fresh server (its peak RSS is the imports').
    await first.stop();
    await sql(cloudUrl, `truncate public.bench_items; delete from tidemark.table_state; checkpoint`);
    const server = await startServerChild(cloudUrl, { profileName: options.profile ? 'offline-server' : undefined });
    servers.push(server);
    const serverRss0 = new ProcSampler(server.pid);
    serverRss0.stop();
    const exportArgs = ['export', '--database', localUrl, '--client', offline.clientId, '--database-id', offline.databaseId, '--api-key', offline.apiKey];
    const importArgs = (bundle: string, receipt: string): string[] => [
      'import',
      '--server',
      server.url,
      '--admin-key',
      server.adminKey,
      bundle,
      '--receipt-out',
      receipt,
    ];
    const b1 = join(work, 'b1.tmb');
    const r1 = join(work, 'r1.json');
    await sql(localUrl, 'checkpoint');
    const ex1 = await measured([...exportArgs, '--out', b1]);
    const b1Bytes = statSync(b1).size;
    log(`offline: first export ${secs(ex1.seconds)}, ${mb(b1Bytes)}, peak RSS ${mb(ex1.peakRssBytes)}; ${ex1.stdout}`);
    const serverSampler = new ProcSampler(server.pid);
    if (options.profile) await statements.enable(cloudUrl);
    const im1 = await measured(importArgs(b1, r1));
    if (options.profile) {
      await statements.disable(cloudUrl);
      log(`offline: first import, PostgreSQL time by statement:\n${statements.top(12).join('\n')}`);
    }
    serverSampler.sample();
    const serverAfterFirst = serverSampler.peakRssBytes;
    log(
      `offline: first import ${secs(im1.seconds)}, import command peak RSS ${mb(im1.peakRssBytes)}, server peak RSS ${mb(serverAfterFirst)} (at start ${mb(serverRss0.peakRssBytes)}); ${im1.stdout}`,
    );
    await equal(offline, 'the first import');

    log(`offline: changes for the second bundle: ${await applyChanges(localUrl, rows, 2)}`);
    const b2 = join(work, 'b2.tmb');
    const ex2 = await measured([...exportArgs, '--receipt', r1, '--out', b2]);
    const b2Bytes = statSync(b2).size;
    log(`offline: second export ${secs(ex2.seconds)}, ${mb(b2Bytes)}; ${ex2.stdout}`);
    const im2 = await measured(importArgs(b2, join(work, 'r2.json')));
    serverSampler.stop();
    log(`offline: second import ${secs(im2.seconds)}; ${im2.stdout}`);
    await equal(offline, 'the second import');

    const n = rows.toLocaleString('en-US');
    results.add({
      part: PART,
      metric: `first bundle size (${n} rows) vs online upload`,
      value: mb(b1Bytes),
      baseline: mb(sync1Bytes),
      ratio: b1Bytes / sync1Bytes,
    });
    results.add({
      part: PART,
      metric: `first export + import vs online first sync`,
      value: `${secs(ex1.seconds)} + ${secs(im1.seconds)}`,
      baseline: secs(sync1.seconds),
      ratio: (ex1.seconds + im1.seconds) / sync1.seconds,
    });
    results.add({ part: PART, metric: `10k changes: bundle size vs online upload`, value: mb(b2Bytes), baseline: mb(sync2Bytes), ratio: b2Bytes / sync2Bytes });
    results.add({
      part: PART,
      metric: `10k changes: export + import vs online sync`,
      value: `${secs(ex2.seconds)} + ${secs(im2.seconds)}`,
      baseline: secs(sync2.seconds),
      ratio: (ex2.seconds + im2.seconds) / sync2.seconds,
    });
    results.add({
      part: PART,
      metric: `first export peak RSS (${n} rows) vs online agent`,
      value: mb(ex1.peakRssBytes),
      baseline: mb(sync1.peakRssBytes),
      ratio: ex1.peakRssBytes / sync1.peakRssBytes,
      target: '< 200 MiB',
      met: ex1.peakRssBytes < 200 * 1024 * 1024,
    });
    results.add({
      part: PART,
      metric: `first import peak RSS: import command / server`,
      value: `${mb(im1.peakRssBytes)} / ${mb(serverAfterFirst)}`,
      target: '< 200 MiB each',
      met: im1.peakRssBytes < 200 * 1024 * 1024 && serverAfterFirst < 200 * 1024 * 1024,
    });
    if (options.profile) {
      await server.stop();
      log(`offline: top self time of the server during the imports:\n${summariseProfile(join(PROFILE_DIR, 'offline-server.cpuprofile')).join('\n')}`);
    }
  } finally {
    for (const s of servers.reverse()) await s.stop().catch(() => {});
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
}
