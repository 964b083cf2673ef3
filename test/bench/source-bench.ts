/**
 * Part `source`: what tracking costs the on-prem database under writes. Two identical 1M-row
 * tables (pgbench's accounts, fillfactor 90 so that untracked updates can be HOT), one tracked with
 * `tidemark track`, one not; pgbench drives the same update and insert workloads against each,
 * interleaved, and the ratio is tracked over untracked throughput. Also prints the share of HOT
 * updates on each table: the `(tidemark_version, key)` index changes on every update, so no update
 * of a tracked table can be HOT.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { type BenchOptions, log, type Results, runCli, sql } from './support.js';

const PART = 'source';
const SECONDS_PER_RUN = 10;
const CLIENTS = 4;

function pgbenchPath(): string | null {
  const r = spawnSync('pgbench', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'pgbench' : null;
}

function accountsDdl(table: string): string {
  return /* sql */ `
    create table ${table} (aid integer primary key, bid integer not null, abalance integer not null, filler character(84))
      with (fillfactor = 90);
    create table ${table}_log (id bigserial primary key, aid integer not null, delta integer not null, at timestamptz not null default now());`;
}

function fill(table: string, rows: number): string {
  return /* sql */ `insert into ${table} select i, (i - 1) / 100000 + 1, 0, '' from generate_series(1, ${Math.trunc(rows)}) i`;
}

interface RunResult {
  tps: number;
  hotShare: number;
}

/** One pgbench run of `script` for SECONDS_PER_RUN; HOT share from pg_stat_user_tables over the run. */
async function pgbench(url: string, table: string, script: string, dir: string): Promise<RunResult> {
  const file = join(dir, `${table}.sql`);
  writeFileSync(file, script);
  await sql(url, `vacuum ${table}`);
  await sql(url, `vacuum ${table}_log`);
  await sql(url, `select pg_stat_reset_single_table_counters('${table}'::regclass)`);
  const u = new URL(url);
  const r = spawnSync(
    'pgbench',
    [
      '-n',
      '-c',
      String(CLIENTS),
      '-j',
      '2',
      '-T',
      String(SECONDS_PER_RUN),
      '-f',
      file,
      '-h',
      u.hostname,
      '-p',
      u.port,
      '-U',
      decodeURIComponent(u.username),
      u.pathname.slice(1),
    ],
    { encoding: 'utf8', env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) } },
  );
  if (r.status !== 0) throw new Error(`pgbench failed: ${r.stderr}`);
  const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1]);
  // pgbench's sessions have ended, and a session flushes its statistics when it ends.
  const [s] = await sql<{ upd: string; hot: string }>(
    url,
    `select n_tup_upd::text as upd, n_tup_hot_upd::text as hot from pg_stat_user_tables where relid = '${table}'::regclass`,
  );
  const upd = Number(s?.upd ?? 0);
  return { tps, hotShare: upd > 0 ? Number(s?.hot ?? 0) / upd : 0 };
}

const updateScript = (t: string, rows: number): string =>
  `\\set aid random(1, ${rows})\n\\set delta random(-5000, 5000)\nupdate ${t} set abalance = abalance + :delta where aid = :aid;\n`;
const insertScript = (t: string, rows: number): string =>
  `\\set aid random(1, ${rows})\n\\set delta random(-5000, 5000)\ninsert into ${t}_log (aid, delta) values (:aid, :delta);\n`;

export async function sourceBench(options: BenchOptions, results: Results): Promise<void> {
  if (!pgbenchPath()) {
    log('source: pgbench is not installed (apt-get install postgresql-client); part not measured');
    results.add({ part: PART, metric: 'tracked vs untracked write throughput', value: 'not measured: pgbench missing' });
    return;
  }
  const rows = options.rows;
  const cluster = await startEmbeddedCluster();
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-source-'));
  try {
    await cluster.createDatabase('bench_source');
    const url = cluster.url('bench_source');
    log(`source: two ${rows.toLocaleString('en-US')}-row tables, one tracked`);
    await sql(url, accountsDdl('plain_accounts') + accountsDdl('tracked_accounts'));
    await sql(url, fill('plain_accounts', rows));
    await sql(url, fill('tracked_accounts', rows));
    await runCli(['track', '--database', url, 'public.tracked_accounts', 'public.tracked_accounts_log']);
    await sql(url, 'vacuum (analyze)');
    const best = { plainUpd: { tps: 0, hotShare: 0 }, trackedUpd: { tps: 0, hotShare: 0 }, plainIns: 0, trackedIns: 0 };
    const reps = options.quick ? 1 : 2;
    for (let rep = 0; rep < reps; rep++) {
      const pu = await pgbench(url, 'plain_accounts', updateScript('plain_accounts', rows), dir);
      const tu = await pgbench(url, 'tracked_accounts', updateScript('tracked_accounts', rows), dir);
      const pi = await pgbench(url, 'plain_accounts', insertScript('plain_accounts', rows), dir);
      const ti = await pgbench(url, 'tracked_accounts', insertScript('tracked_accounts', rows), dir);
      log(
        `source rep ${rep + 1}: updates ${pu.tps.toFixed(0)} vs ${tu.tps.toFixed(0)} tps (HOT ${(pu.hotShare * 100).toFixed(0)}% vs ${(tu.hotShare * 100).toFixed(0)}%), inserts ${pi.tps.toFixed(0)} vs ${ti.tps.toFixed(0)} tps`,
      );
      if (pu.tps > best.plainUpd.tps) best.plainUpd = pu;
      if (tu.tps > best.trackedUpd.tps) best.trackedUpd = tu;
      best.plainIns = Math.max(best.plainIns, pi.tps);
      best.trackedIns = Math.max(best.trackedIns, ti.tps);
    }
    const tps = (n: number): string => `${Math.round(n).toLocaleString('en-US')} tps`;
    results.ratio(
      PART,
      `updates (pgbench, ${CLIENTS} clients): tracked vs untracked`,
      tps(best.trackedUpd.tps),
      tps(best.plainUpd.tps),
      best.trackedUpd.tps / best.plainUpd.tps,
      '>= 0.8',
    );
    results.add({
      part: PART,
      metric: 'HOT updates: tracked; untracked',
      value: `${(best.trackedUpd.hotShare * 100).toFixed(0)}%`,
      baseline: `${(best.plainUpd.hotShare * 100).toFixed(0)}%`,
    });
    results.ratio(
      PART,
      `inserts (pgbench, ${CLIENTS} clients): tracked vs untracked`,
      tps(best.trackedIns),
      tps(best.plainIns),
      best.trackedIns / best.plainIns,
      '>= 0.8',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await cluster.stop();
  }
}
