/**
 * Part 3, verification: `Agent.verify` (what `tidemark verify` runs) on identical tables (dry run),
 * then after 100 and 10,000 scattered differences (remote rows deleted, extra remote rows, remote
 * content edited in place under the same version), repaired. Time, round trips and bytes on the wire
 * (a TCP proxy between agent and server counts them), against pg_comparator on a plain table of the
 * same rows with the same differences (a TCP proxy in front of its target counts its bytes).
 */
import { execFileSync, spawn } from 'node:child_process';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import pg from 'pg';
import copyStreams from 'pg-copy-streams';

import { Agent } from '../../src/agent/agent.js';
import { createAgentMetrics } from '../../src/agent/agent-metrics.js';
import { httpRemoteFactory } from '../../src/agent/http-remote.js';
import { PgTableTracking } from '../../src/agent/local/table-tracking.js';
import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { generateItems } from './engine-bench.js';
import { type CountingProxy, startCountingProxy } from './link-proxy.js';
import { pg15Available, startPg15Cluster } from './pg15-cluster.js';
import {
  type BenchOptions,
  fingerprint,
  ITEMS_DDL,
  itemsInsert,
  log,
  mb,
  type Results,
  StatementLog,
  secs,
  sql,
  startServerChild,
  withClient,
} from './support.js';

const PART = 'verify';

function pgComparatorPath(): string | null {
  try {
    return execFileSync('sh', ['-c', 'command -v pg_comparator']).toString().trim() || null;
  } catch {
    return null;
  }
}

/** D distinct ids in 1..rows from a seeded generator (mulberry32), split in three kinds. */
function pickDifferences(rows: number, d: number, seed: number): { deleted: number[]; edited: number[]; extraFrom: number[] } {
  let a = seed >>> 0;
  const random = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const ids = new Set<number>();
  while (ids.size < d) ids.add(1 + Math.floor(random() * rows));
  const all = [...ids];
  const third = Math.floor(d / 3);
  return { deleted: all.slice(0, third), edited: all.slice(third, 2 * third), extraFrom: all.slice(2 * third) };
}

interface Measured {
  seconds: number;
  wireBytes: number;
}

/** Runs pg_comparator (compare, or synchronize with --do-it), its target behind the counting proxy. */
async function runPgComparator(bin: string, port: number, proxy: CountingProxy, dbs: Dbs, sync: boolean): Promise<Measured & { output: string }> {
  const args = [
    '--stats=txt',
    ...(sync ? ['--synchronize', '--do-it'] : []),
    `pgsql://postgres@127.0.0.1:${port}/${dbs.local}/public.bench_items?id`,
    `pgsql://postgres@127.0.0.1:${proxy.port}/${dbs.target}/public.bench_items?id`,
  ];
  const b0 = proxy.bytes();
  const t0 = performance.now();
  const out = await new Promise<{ code: number | null; out: string }>((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
  const seconds = (performance.now() - t0) / 1000;
  if (out.code !== 0) throw new Error(`pg_comparator exited ${out.code}: ${out.out.slice(-2000)}`);
  const b1 = proxy.bytes();
  return { seconds, wireBytes: b1.sent - b0.sent + (b1.received - b0.received), output: out.out };
}

interface Dbs {
  local: string;
  cloud: string;
  target: string;
}

interface Scenario {
  /** Database name prefix. */
  name: string;
  /** Label prefix in the results ('' for the main scenario). */
  label: string;
  rows: number;
  /**
   * Versions the rows are spread over. 1: rows that existed before tracking (all version 0). N > 1:
   * rows written after tracking in N transactions (one version each), like a table live for a while.
   */
  versions: number;
  cases: number[];
}

type Cluster = { baseUrl: string; url(database: string): string; createDatabase(name: string): Promise<void> };

export async function verifyBench(options: BenchOptions, results: Results): Promise<void> {
  const comparator = options.noBaseline ? null : pgComparatorPath();
  const baseline = comparator !== null && pg15Available();
  if (!baseline)
    log(
      options.noBaseline
        ? 'verify: baseline skipped (--no-baseline)'
        : 'verify: pg_comparator or PostgreSQL 15 not installed (apt-get install postgresql-comparator): tidemark figures only, baseline missing',
    );
  log(`verify: starting ${baseline ? 'a PostgreSQL 15 cluster (pg_comparator targets it)' : 'an embedded PostgreSQL'}`);
  const pg15 = baseline ? await startPg15Cluster() : null;
  const statements = new StatementLog(pg15?.logFile ?? null);
  const embedded = pg15 ? null : await startEmbeddedCluster({ onLog: statements.onLog });
  const cluster = (pg15 ?? embedded) as Cluster;
  const scenarios: Scenario[] = [
    {
      name: 'v',
      label: '',
      rows: options.rows,
      versions: options.versions,
      cases: [0, 100, 10_000].filter((d) => d <= options.rows / 20),
    },
  ];
  // Rows that existed before tracking share version 0: (version, key) ranges then differ in the key alone.
  if (options.versions > 1 && !options.quick)
    scenarios.push({ name: 'v0', label: `${(100_000).toLocaleString('en-US')} rows at version 0: `, rows: 100_000, versions: 1, cases: [100] });
  try {
    for (const sc of scenarios) await scenario(sc, cluster, baseline ? comparator : null, statements, options, results);
  } finally {
    await pg15?.stop();
    await embedded?.stop();
  }
}

async function scenario(
  sc: Scenario,
  cluster: Cluster,
  comparator: string | null,
  statements: StatementLog,
  options: BenchOptions,
  results: Results,
): Promise<void> {
  const { rows } = sc;
  const dbs: Dbs = { local: `${sc.name}_local`, cloud: `${sc.name}_cloud`, target: `${sc.name}_target` };
  log(
    `verify: ${rows.toLocaleString('en-US')} rows in ${sc.versions === 1 ? '1 version (written before tracking)' : `${sc.versions} versions (written after tracking)`}`,
  );
  const cleanups: (() => Promise<void>)[] = [];
  try {
    for (const db of [dbs.local, dbs.cloud, ...(comparator ? [dbs.target] : [])]) await cluster.createDatabase(db);
    const localUrl = cluster.url(dbs.local);
    const cloudUrl = cluster.url(dbs.cloud);
    const targetUrl = cluster.url(dbs.target);
    const pgPort = Number(new URL(cluster.baseUrl).port);

    let t0 = performance.now();
    const localPool = new pg.Pool({ connectionString: localUrl, max: 8 });
    localPool.on('error', () => {});
    cleanups.push(() => localPool.end());
    if (sc.versions === 1) {
      await generateItems(localUrl, rows);
      await new PgTableTracking(localPool).track('public.bench_items');
    } else {
      await sql(localUrl, ITEMS_DDL);
      await new PgTableTracking(localPool).track('public.bench_items');
      await withClient(localUrl, async (c) => {
        const per = Math.ceil(rows / sc.versions);
        for (let lo = 1; lo <= rows; lo += per) await c.query(itemsInsert('bench_items', lo, Math.min(rows, lo + per - 1)));
      });
    }
    await sql(localUrl, 'vacuum analyze bench_items');
    log(`verify: generated and tracked in ${secs((performance.now() - t0) / 1000)}`);

    const server = await startServerChild(cloudUrl);
    cleanups.push(() => server.stop());
    const serverProxy = await startCountingProxy('127.0.0.1', Number(new URL(server.url).port));
    cleanups.push(() => serverProxy.close());
    const reg: RegisterResult = await server.register('acme', 'verify site');
    const config = loadAgentConfig({
      env: {},
      flags: {
        databaseUrl: localUrl,
        serverUrl: `http://127.0.0.1:${serverProxy.port}`,
        clientId: reg.clientId,
        databaseId: reg.databaseId,
        apiKey: reg.apiKey,
        logLevel: 'silent',
        runBudgetSeconds: 3600,
        verification: { periodHours: 0 },
      },
    });
    const agent = await Agent.create(config, localPool, createAgentMetrics(), silentLogger, httpRemoteFactory(config));
    cleanups.push(() => agent.stop());
    t0 = performance.now();
    const first = await agent.tick({ checkCount: true });
    if (!first.converged) throw new Error(`initial sync did not converge: ${first.tables[0]?.error?.message}`);
    log(`verify: initial sync in ${secs((performance.now() - t0) / 1000)}`);
    await sql(cloudUrl, 'vacuum analyze public.bench_items');
    const tenantWhere = `tidemark_database_id = '${reg.databaseId}'`;
    const localPrint = await fingerprint(localUrl, 'bench_items');

    // The baseline's target: a plain table of the same rows and columns (no tenant columns), and the pgcmp functions.
    let tableBytes = 0;
    let targetProxy: CountingProxy | null = null;
    if (comparator) {
      await sql(
        targetUrl,
        `create table bench_items (id bigint primary key, account int not null, amount numeric(12,2) not null, note text not null, created_at timestamptz not null, tidemark_version bigint not null)`,
      );
      tableBytes = await copyTable(localUrl, targetUrl);
      await sql(targetUrl, 'vacuum analyze bench_items');
      await sql(localUrl, 'create extension if not exists pgcmp');
      await sql(targetUrl, 'create extension if not exists pgcmp');
      targetProxy = await startCountingProxy('127.0.0.1', pgPort);
      const tp = targetProxy;
      cleanups.push(() => tp.close());
    } else {
      tableBytes = await copyBytes(localUrl);
    }
    log(`verify: table is ${mb(tableBytes)} as COPY text`);

    for (const [i, d] of sc.cases.entries()) {
      const label = `${sc.label}${d === 0 ? 'identical tables (dry run)' : `${d.toLocaleString('en-US')} differences, repaired`}`;
      if (d > 0) {
        const diff = pickDifferences(rows, d, 1000 + i);
        await tamper(cloudUrl, 'public.bench_items', rows, diff, reg.databaseId);
        if (comparator) await tamper(targetUrl, 'bench_items', rows, diff, null);
        for (const url of comparator ? [cloudUrl, targetUrl] : [cloudUrl]) await sql(url, 'checkpoint');
      }

      // tidemark
      const traffic0 = { ...agent.remote.traffic };
      const wire0 = serverProxy.bytes();
      if (options.profile) await statements.enable(localUrl);
      t0 = performance.now();
      const [r] = await agent.verify({ dryRun: d === 0 });
      const seconds = (performance.now() - t0) / 1000;
      if (options.profile) {
        await statements.disable(localUrl);
        log(`verify: [${label}] PostgreSQL time by statement (database: statement):\n${statements.top(14).join('\n')}`);
      }
      const traffic = agent.remote.traffic;
      const bodyBytes = traffic.bytesSent - traffic0.bytesSent + (traffic.bytesReceived - traffic0.bytesReceived);
      const wire1 = serverProxy.bytes();
      const wireBytes = wire1.sent - wire0.sent + (wire1.received - wire0.received);
      const requests = traffic.requests - traffic0.requests;
      if (!r) throw new Error('verify returned no table');
      if (r.error) throw new Error(`verify failed: ${r.error.message}`);
      const rep = r.diff;
      const found = rep ? rep.missing.length + rep.extra.length + rep.changed.length : 0;
      log(
        `verify: [${label}] tidemark ${secs(seconds)}: found ${found} (missing ${rep?.missing.length}, extra ${rep?.extra.length}, changed ${rep?.changed.length}); ` +
          `${rep?.roundTrips} manifest round trips, ${requests} requests, ${rep?.bucketsCompared} ranges, ${rep?.rowsCompared} rows compared; ` +
          `${mb(bodyBytes)} bodies, ${mb(wireBytes)} on the wire`,
      );
      if (found !== d) results.fail(`verify: [${label}] tidemark found ${found} differences, expected ${d}`);
      if (d > 0) {
        const after = await fingerprint(cloudUrl, 'public.bench_items', tenantWhere);
        if (after !== localPrint) results.fail(`verify: [${label}] replica differs from local after tidemark's repair`);
        else log(`verify: [${label}] replica identical to local after repair`);
      }

      // pg_comparator
      let base: Measured | null = null;
      if (comparator && targetProxy) {
        const p = await runPgComparator(comparator, pgPort, targetProxy, dbs, d > 0);
        base = p;
        const stats = p.output
          .split('\n')
          .filter((l) => /differences|query number|total time|checksum:/i.test(l))
          .map((l) => l.trim())
          .join('; ');
        log(`verify: [${label}] pg_comparator ${secs(p.seconds)}, ${mb(p.wireBytes)} on the wire${stats ? ` (${stats})` : ''}`);
        if (d > 0) {
          const after = await fingerprint(targetUrl, 'bench_items');
          if (after !== localPrint) results.fail(`verify: [${label}] pg_comparator's target differs from local after its synchronisation`);
        }
      }

      const value = `${secs(seconds)}, ${rep?.roundTrips} RT, ${mb(wireBytes)}`;
      const timeTarget = d <= 100 ? '<= 0.7' : '<= 0.5';
      if (base) {
        results.ratio(PART, `${label}: time`, value, `${secs(base.seconds)}, ${mb(base.wireBytes)}`, seconds / base.seconds, timeTarget);
        if (d === 0) results.ratio(PART, `${label}: wire bytes`, mb(wireBytes), mb(base.wireBytes), wireBytes / base.wireBytes, '<= 1');
      } else results.add({ part: PART, metric: `${label}: time (baseline missing)`, value });
      if (d >= 10_000) results.ratio(PART, `${label}: wire bytes vs table bytes`, mb(wireBytes), mb(tableBytes), wireBytes / tableBytes, '<= 0.1');
    }
  } finally {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  }
}

/** Applies the same differences to the replica (tenant columns) or to the plain target. */
async function tamper(
  url: string,
  table: string,
  rows: number,
  diff: { deleted: number[]; edited: number[]; extraFrom: number[] },
  databaseId: string | null,
): Promise<void> {
  const tenant = databaseId ? `tidemark_database_id = '${databaseId}' and ` : '';
  const tenantCols = databaseId ? 'tidemark_client_id, tidemark_database_id, ' : '';
  await withClient(url, async (c) => {
    await c.query('begin');
    await c.query(`delete from ${table} where ${tenant}id = any($1::bigint[])`, [diff.deleted]);
    // In place, under the same version: only hashes can see it.
    await c.query(`update ${table} set note = 'tampered ' || id where ${tenant}id = any($1::bigint[])`, [diff.edited]);
    await c.query(
      `insert into ${table} (${tenantCols}tidemark_version, id, account, amount, note, created_at)
       select ${tenantCols}tidemark_version, id + $2::bigint, account, amount, note, created_at from ${table} where ${tenant}id = any($1::bigint[])`,
      [diff.extraFrom, rows],
    );
    // The server's O(1) row count follows what its table now holds (as if the remote had lost or gained rows on its own).
    if (databaseId)
      await c.query(
        `update tidemark.table_state set row_count = (select count(*) from ${table} where ${tenant}true) where database_id = $1::uuid and table_name = 'bench_items'`,
        [databaseId],
      );
    await c.query('commit');
  });
}

/** COPY text size of the table, by streaming it. */
async function copyBytes(localUrl: string): Promise<number> {
  return withClient(localUrl, async (c) => {
    let bytes = 0;
    const stream = c.query(copyStreams.to('copy bench_items to stdout'));
    for await (const chunk of stream as AsyncIterable<Buffer>) bytes += chunk.length;
    return bytes;
  });
}

/** Copies the local rows into the target table; returns the COPY text size. */
async function copyTable(localUrl: string, targetUrl: string): Promise<number> {
  const cols = 'id, account, amount, note, created_at, tidemark_version';
  const src = new pg.Client({ connectionString: localUrl });
  const dst = new pg.Client({ connectionString: targetUrl });
  await src.connect();
  await dst.connect();
  try {
    let bytes = 0;
    await pipeline(
      src.query(copyStreams.to(`copy (select ${cols} from bench_items order by id) to stdout`)),
      new Transform({
        transform(chunk: Buffer, _e, done) {
          bytes += chunk.length;
          done(null, chunk);
        },
      }),
      dst.query(copyStreams.from(`copy bench_items (${cols}) from stdin`)),
    );
    return bytes;
  } finally {
    await src.end();
    await dst.end();
  }
}
