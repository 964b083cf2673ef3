/**
 * Part `fleet` (issue 10): what a fleet of agents costs one server and its PostgreSQL.
 *
 * 1. Cost of one table run, exact: a real Agent (TableSync, HttpRemote) against a real local
 *    database and an in-process server whose pool counts statements and transactions
 *    (statement-counter.ts): an idle run, an idle run replayed the way agents made it before
 *    (declare + an empty upload that settles), a run uploading 20 rows, a rolling verification slice.
 * 2. Load: the server as its own process (`tidemark server`), N simulated tenants of T tables
 *    (registered through the admin API, declared, 20 rows each) driven by fleet-load.ts, which
 *    replays the requests the agent makes (checked against phase 1). Idle runs/s and their p50/p99,
 *    beside the old protocol's and the raw floors of this machine (`select 1` through a pool of the
 *    server's size, an HTTP request answered by node); then 1 run in 5 uploading 20 rows.
 *
 * 3. The same idle load on 2 (or TIDEMARK_BENCH_FLEET_PROCESSES) server processes on the same
 *    database, each tenant sticky to one: how the server scales with processes.
 *
 * Env: TIDEMARK_BENCH_FLEET_TENANTS (200), _TABLES (5), _CONCURRENCY (32), _SECONDS (15 per phase),
 * _PROCESSES (1,2).
 * On a shared machine the absolute figures move with the load; the ratios move less.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import pg from 'pg';

import { Agent } from '../../src/agent/agent.js';
import { createAgentMetrics } from '../../src/agent/agent-metrics.js';
import { httpRemoteFactory } from '../../src/agent/http-remote.js';
import { PgTableTracking } from '../../src/agent/local/table-tracking.js';
import type { Remote } from '../../src/agent/remote.js';
import { sliceDue } from '../../src/agent/verify-schedule.js';
import { adminRequest } from '../../src/cli/admin-client.js';
import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { startServer } from '../../src/server/start-server.js';
import { StatementCounter } from '../../src/server/statement-counter.js';
import { loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { loadServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { drive, FleetHttp, type FleetTable, idleRun, type LoadFigures, legacyIdleRun, percentile, setUpFleet, uploadRun } from './fleet-load.js';
import { type BenchOptions, log, PROFILE_DIR, type Results, sql, startServerChild, summariseProfile } from './support.js';

const PART = 'fleet';

function envInt(name: string, fallback: number): number {
  const v = Number(process.env[`TIDEMARK_BENCH_FLEET_${name}`]);
  return Number.isInteger(v) && v > 0 ? v : fallback;
}

interface RunCost {
  requests: number;
  statements: number;
  transactions: number;
}

function perRun(total: RunCost, runs: number): RunCost {
  return { requests: total.requests / runs, statements: total.statements / runs, transactions: total.transactions / runs };
}

function fmt(c: RunCost): string {
  return `${c.requests.toFixed(1)} req, ${c.statements.toFixed(1)} stmt, ${c.transactions.toFixed(1)} xact`;
}

export async function fleetBench(options: BenchOptions, results: Results): Promise<void> {
  const tenants = envInt('TENANTS', options.quick ? 50 : 200);
  const tables = envInt('TABLES', 5);
  const concurrency = envInt('CONCURRENCY', 32);
  const seconds = envInt('SECONDS', options.quick ? 5 : 15);
  // Server processes to compare, e.g. "1,2" (the first phase always runs one).
  const processes = (process.env.TIDEMARK_BENCH_FLEET_PROCESSES ?? '1,2')
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
  log(`fleet: starting an embedded PostgreSQL (${tenants} tenants x ${tables} tables, ${concurrency} runs at once, ${seconds} s a phase)`);
  const cluster = await startEmbeddedCluster();
  try {
    await costPhase(cluster, results);
    await loadPhase(cluster, results, { tenants, tables, concurrency, seconds, processes, profile: options.profile });
  } finally {
    await cluster.stop();
  }
}

/** Phase 1: a real agent's runs, counted on the server's pool. */
async function costPhase(cluster: { url(db: string): string; createDatabase(name: string): Promise<void> }, results: Results): Promise<void> {
  await cluster.createDatabase('fleet_cost_cloud');
  await cluster.createDatabase('fleet_cost_local');
  const counter = new StatementCounter();
  const adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
  const config = loadServerConfig({
    env: {},
    flags: { databaseUrl: cluster.url('fleet_cost_cloud'), listen: '127.0.0.1:0', adminKey, logLevel: 'silent', allowSuperuser: true },
  });
  const server = await startServer(config, silentLogger, { statements: counter });
  const localUrl = cluster.url('fleet_cost_local');
  const localPool = new pg.Pool({ connectionString: localUrl, max: 6 });
  localPool.on('error', () => {});
  const http = new FleetHttp(server.url, 4);
  try {
    const reg = await adminRequest<RegisterResult>(server.url, adminKey, 'POST', '/v1/admin/customers/acme/databases', { name: 'cost' });
    await sql(localUrl, `create table items (id int primary key, name text not null)`);
    await sql(localUrl, `insert into items select i, 'item ' || i from generate_series(1, 5000) i`);
    await sql(localUrl, 'analyze items');
    await new PgTableTracking(localPool).track('public.items');
    const agentConfig = loadAgentConfig({
      env: {},
      flags: {
        databaseUrl: localUrl,
        serverUrl: server.url,
        clientId: reg.clientId,
        databaseId: reg.databaseId,
        apiKey: reg.apiKey,
        logLevel: 'silent',
        verification: { periodHours: 24 },
      },
    });
    // The run report is the agent's, not a table run's (every 5 minutes when idle): counted apart.
    const reports: RunCost = { requests: 0, statements: 0, transactions: 0 };
    let clock = Date.parse('2026-01-01T00:00:00Z');
    let remote: Remote | undefined;
    let agentId = '';
    const makeHttp = httpRemoteFactory(agentConfig);
    const agent = await Agent.create(
      agentConfig,
      localPool,
      createAgentMetrics(),
      silentLogger,
      (id) => {
        agentId = id;
        remote = reportsCounted(makeHttp(id), counter, reports);
        return remote;
      },
      { now: () => clock },
    );
    const measure = async (fn: () => Promise<void>, runs = 1): Promise<RunCost> => {
      const r0 = (remote?.traffic.requests ?? 0) + http.requests;
      const before = { ...reports };
      counter.reset();
      for (let i = 0; i < runs; i++) await fn();
      return perRun(
        {
          requests: (remote?.traffic.requests ?? 0) + http.requests - r0 - (reports.requests - before.requests),
          statements: counter.statements - (reports.statements - before.statements),
          transactions: counter.transactions - (reports.transactions - before.transactions),
        },
        runs,
      );
    };
    const tick = async (): Promise<void> => {
      clock += 60_000;
      const t = await agent.tick();
      if (!t.converged) throw new Error(`a run did not converge: ${t.tables[0]?.error?.message}`);
    };
    // The first runs upload and verify the first slice; the agent then knows the server's state.
    for (let i = 0; i < 3; i++) await tick();
    const idle = await measure(tick, 10);
    const upload = await measure(async () => {
      await sql(localUrl, `update items set name = name || '+' where id in (select id from items order by random() limit 20)`);
      await tick();
    }, 5);
    // A slice is owed every 288 minutes for 5,000 rows a day: move the clock past one.
    const slice = await measure(async () => {
      clock += 288 * 60_000;
      await tick();
    }, 3);
    // The same tenant's other table, replayed by the load generator both ways.
    const t: FleetTable = {
      tenant: { ...reg, agentId },
      name: { schema: 'public', name: 'fleet_t0' },
      known: { settledVersion: '0', settledXmax: null, settledXip: [], maxVersion: null },
      busy: false,
    };
    await uploadRun(http, t, 20, 1000);
    await idleRun(http, t);
    const replayed = await measure(async () => void (await idleRun(http, t)), 10);
    const legacy = await measure(() => legacyIdleRun(http, t), 10);
    log(`fleet: idle run ${fmt(idle)} (replayed ${fmt(replayed)}); before: ${fmt(legacy)}; upload run ${fmt(upload)}; slice run ${fmt(slice)}`);
    log(`fleet: run reports (one per agent tick with news, else every 5 minutes): ${fmt(perRun(reports, Math.max(1, reports.requests)))} each`);
    const row = (metric: string, value: number, baseline: number | null, target: number | null): void => {
      results.add({
        part: PART,
        metric,
        value: value.toFixed(1),
        ...(baseline === null ? {} : { baseline: baseline.toFixed(1), ratio: value / baseline }),
        ...(target === null ? {} : { target: `<= ${target}`, met: value <= target }),
      });
    };
    row('idle run: requests (baseline: the old protocol)', idle.requests, legacy.requests, 1);
    row('idle run: SQL statements', idle.statements, legacy.statements, 3);
    row('idle run: transactions (each autocommit statement is one)', idle.transactions, legacy.transactions, null);
    row('run uploading 20 rows: requests', upload.requests, null, null);
    row('run uploading 20 rows: SQL statements', upload.statements, null, null);
    if (Math.abs(replayed.statements - idle.statements) > 0.5 || replayed.requests !== idle.requests)
      results.fail(`the load generator's idle run (${fmt(replayed)}) is not the agent's (${fmt(idle)})`);
    // Rolling verification over a day of one-minute runs, for tables of several sizes.
    const extra = { requests: slice.requests - idle.requests, statements: slice.statements - idle.statements };
    for (const rows of [100, 5000, 1_000_000]) {
      let slices = 0;
      let progress = { passStartedAt: null as Date | null, rowsDone: 0 };
      const t0 = Date.parse('2026-01-02T00:00:00Z');
      for (let m = 0; m < 1440; m++) {
        const due = sliceDue(t0 + m * 60_000, progress, rows, 24);
        if (!due) continue;
        slices++;
        const done = progress.rowsDone + due.rows >= rows;
        progress = done
          ? { passStartedAt: new Date(t0 + m * 60_000), rowsDone: 0 }
          : { passStartedAt: due.passStartedAt, rowsDone: progress.rowsDone + due.rows };
      }
      // A slice costs the requests and statements measured above whatever its size (its rows are read once a period).
      const fraction = (slices * extra.statements) / (1440 * idle.statements);
      results.add({
        part: PART,
        metric: `verification statements / idle statements, ${rows.toLocaleString('en-US')}-row tables, 24 h period`,
        value: fraction.toFixed(3),
        target: '<= 0.1',
        met: fraction <= 0.1,
      });
    }
    await agent.stop();
  } finally {
    http.close();
    await localPool.end();
    await server.close();
  }
}

/** The remote, its run reports' requests, statements and transactions added up in `into` (the agent sends them one at a time, after its runs). */
function reportsCounted(remote: Remote, counter: StatementCounter, into: RunCost): Remote {
  return new Proxy(remote, {
    get(target, prop) {
      if (prop === 'report' && target.report) {
        const report = target.report.bind(target);
        return async (...args: Parameters<typeof report>) => {
          const s0 = counter.statements;
          const x0 = counter.transactions;
          try {
            return await report(...args);
          } finally {
            into.requests++;
            into.statements += counter.statements - s0;
            into.transactions += counter.transactions - x0;
          }
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Phase 2: the server as its own process under the simulated fleet. */
async function loadPhase(
  cluster: { url(db: string): string; createDatabase(name: string): Promise<void> },
  results: Results,
  o: { tenants: number; tables: number; concurrency: number; seconds: number; processes: number[]; profile: boolean },
): Promise<void> {
  await cluster.createDatabase('fleet_load');
  const cloudUrl = cluster.url('fleet_load');
  // The embedded cluster's only role is its superuser.
  process.env.TIDEMARK_ALLOW_SUPERUSER = '1';
  const server = await startServerChild(cloudUrl, { profileName: o.profile ? 'fleet-server' : undefined });
  const http = new FleetHttp(server.url, o.concurrency);
  try {
    let t0 = performance.now();
    const fleet = await setUpFleet(http, server.adminKey, { tenants: o.tenants, tables: o.tables, rows: 20, concurrency: 8 });
    log(`fleet: ${fleet.length} tables of ${o.tenants} tenants set up in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // Every table once the new way, so that the server knows each declaration.
    t0 = performance.now();
    for (const t of fleet) await idleRun(http, t);

    const floorSql = await selectOneFloor(cloudUrl, o);
    const floorHttp = await drive(http, fleet, o, async () => {
      const a = await http.send('GET', '/healthz', undefined, {});
      if (a.status !== 200) throw new Error(`healthz ${a.status}`);
    });
    const legacy = await drive(http, fleet, o, (t) => legacyIdleRun(http, t));
    const stats0 = await dbStats(cloudUrl);
    let refused = 0;
    const idle = await drive(http, fleet, o, async (t) => {
      if (!(await idleRun(http, t))) refused++;
    });
    const stats1 = await dbStats(cloudUrl);
    const mixed = await drive(http, fleet, o, async (t, i) => {
      if (i % 5 === 0) await uploadRun(http, t, 20, 20);
      else await idleRun(http, t);
    });
    // More server processes on the same database, each tenant sticky to one (as a load balancer
    // hashing the database id would do): the scaling with processes.
    const scaling: { processes: number; figures: LoadFigures }[] = [{ processes: 1, figures: idle }];
    for (const k of o.processes.filter((p) => p > 1)) {
      const extra = await Promise.all(Array.from({ length: k - 1 }, () => startServerChild(cloudUrl)));
      const clients = [http, ...extra.map((x) => new FleetHttp(x.url, o.concurrency))];
      const byTenant = new Map(fleet.map((t, i) => [t.tenant.databaseId, clients[Math.floor(i / o.tables) % clients.length] as FleetHttp]));
      try {
        for (const t of fleet) await idleRun(byTenant.get(t.tenant.databaseId) ?? http, t);
        const f = await drive(clients, fleet, o, async (t) => {
          if (!(await idleRun(byTenant.get(t.tenant.databaseId) ?? http, t))) refused++;
        });
        scaling.push({ processes: k, figures: f });
      } finally {
        for (const c of clients.slice(1)) c.close();
        await Promise.all(extra.map((x) => x.stop()));
      }
    }
    const line = (name: string, f: LoadFigures): string =>
      `${name}: ${f.runs} runs in ${f.seconds.toFixed(1)} s = ${f.runsPerSecond.toFixed(0)}/s, p50 ${f.p50Ms.toFixed(1)} ms, p99 ${f.p99Ms.toFixed(1)} ms, ${(f.requests / Math.max(f.runs, 1)).toFixed(2)} req/run, errors ${f.errors}, failed ${f.failedRuns}${f.lastFailure ? ` (${f.lastFailure.slice(0, 120)})` : ''}`;
    log(`fleet: ${line('select 1', floorSql)}`);
    log(`fleet: ${line('GET /healthz', floorHttp)}`);
    log(`fleet: ${line('idle runs, old protocol', legacy)}`);
    log(`fleet: ${line('idle runs', idle)} (${refused} idle settles refused)`);
    log(`fleet: ${line('1 run in 5 uploads 20 rows', mixed)}`);
    const xacts = (stats1.xacts - stats0.xacts) / Math.max(idle.runs, 1);
    const wal = (stats1.walBytes - stats0.walBytes) / Math.max(idle.runs, 1);
    for (const sc of scaling.slice(1)) log(`fleet: ${line(`idle runs, ${sc.processes} server processes`, sc.figures)}`);
    log(`fleet: per idle run under load: ${xacts.toFixed(2)} transactions (pg_stat_database, all backends), ${wal.toFixed(0)} B of WAL`);
    results.ratio(
      PART,
      'idle runs/s (baseline: the old protocol)',
      idle.runsPerSecond.toFixed(0),
      legacy.runsPerSecond.toFixed(0),
      idle.runsPerSecond / legacy.runsPerSecond,
      '>= 2',
    );
    results.add({
      part: PART,
      metric: 'idle runs/s (target 1,000 on 2 cores)',
      value: idle.runsPerSecond.toFixed(0),
      target: '>= 1000',
      met: idle.runsPerSecond >= 1000,
    });
    // Floors for reference (what a request or a statement alone costs here), not targets.
    for (const [metric, floor] of [
      ['idle runs/s vs raw select 1/s through a pool', floorSql],
      ['idle runs/s vs GET /healthz/s', floorHttp],
    ] as const)
      results.add({
        part: PART,
        metric,
        value: idle.runsPerSecond.toFixed(0),
        baseline: floor.runsPerSecond.toFixed(0),
        ratio: idle.runsPerSecond / floor.runsPerSecond,
      });
    results.ratio(PART, 'idle run p50 ms (baseline: old protocol)', idle.p50Ms.toFixed(1), legacy.p50Ms.toFixed(1), idle.p50Ms / legacy.p50Ms, '<= 0.7');
    results.add({
      part: PART,
      metric: 'idle run p99 ms',
      value: idle.p99Ms.toFixed(1),
      baseline: legacy.p99Ms.toFixed(1),
      ratio: idle.p99Ms / legacy.p99Ms,
      target: '<= 100',
      met: idle.p99Ms <= 100,
    });
    results.add({
      part: PART,
      metric: 'runs/s, 1 in 5 uploading 20 rows',
      value: mixed.runsPerSecond.toFixed(0),
      target: '>= 600',
      met: mixed.runsPerSecond >= 600,
    });
    results.add({ part: PART, metric: 'WAL bytes per idle run', value: wal.toFixed(0) });
    for (const sc of scaling.slice(1))
      results.add({
        part: PART,
        metric: `idle runs/s, ${sc.processes} server processes (baseline: 1)`,
        value: sc.figures.runsPerSecond.toFixed(0),
        baseline: idle.runsPerSecond.toFixed(0),
        ratio: sc.figures.runsPerSecond / idle.runsPerSecond,
      });
    if (idle.failedRuns + mixed.failedRuns + legacy.failedRuns > 0)
      results.fail(
        `fleet: runs failed under load (${idle.failedRuns + mixed.failedRuns + legacy.failedRuns}): ${idle.lastFailure || mixed.lastFailure || legacy.lastFailure}`,
      );
  } finally {
    http.close();
    await server.stop();
  }
  if (o.profile) {
    const path = join(PROFILE_DIR, 'fleet-server.cpuprofile');
    if (existsSync(path)) log(`fleet: the server's top self time (whole load phase) in ${path}:\n${summariseProfile(path, 25).join('\n')}`);
  }
}

/** `select 1` round trips through a pool of the server's size, `concurrency` at once: the database's floor here. */
async function selectOneFloor(url: string, o: { concurrency: number; seconds: number }): Promise<LoadFigures> {
  const p = new pg.Pool({ connectionString: url, max: 20 });
  p.on('error', () => {});
  try {
    const latencies: number[] = [];
    const t0 = performance.now();
    const deadline = t0 + o.seconds * 1000;
    await Promise.all(
      Array.from({ length: o.concurrency }, async () => {
        while (performance.now() < deadline) {
          const s = performance.now();
          await p.query('select 1');
          latencies.push(performance.now() - s);
        }
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      runs: latencies.length,
      seconds,
      runsPerSecond: latencies.length / seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      requests: 0,
      errors: 'none',
      failedRuns: 0,
      lastFailure: '',
    };
  } finally {
    await p.end();
  }
}

async function dbStats(url: string): Promise<{ xacts: number; walBytes: number }> {
  // Backends publish their counters about once a second: wait for them.
  await new Promise((r) => setTimeout(r, 1500));
  const [row] = await sql<{ x: string; w: string }>(
    url,
    `select (xact_commit + xact_rollback)::text as x, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text as w from pg_stat_database where datname = current_database()`,
  );
  return { xacts: Number(row?.x ?? 0), walBytes: Number(row?.w ?? 0) };
}
