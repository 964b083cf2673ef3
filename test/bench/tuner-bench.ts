/**
 * Part 2, the batch tuner: a first sync over simulated links (an HTTP proxy that rejects bodies
 * above a size, or that throttles to a bandwidth with a latency), tuned from no history, against the
 * best fixed batch size of a sweep over the same link (minBytes = maxBytes = initialBytes = S).
 */
import pg from 'pg';

import { Agent } from '../../src/agent/agent.js';
import { createAgentMetrics } from '../../src/agent/agent-metrics.js';
import { httpRemoteFactory } from '../../src/agent/http-remote.js';
import { PgTableTracking } from '../../src/agent/local/table-tracking.js';
import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { type AgentConfigInput, loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { generateItems } from './engine-bench.js';
import { type LinkMode, startLinkProxy } from './link-proxy.js';
import { type BenchOptions, fingerprint, kib, log, type Results, rate, secs, sql, startServerChild } from './support.js';

const PART = 'tuner';
const K = 1024;

interface Link {
  name: string;
  mode: LinkMode;
  sweep: number[];
  quickSweep: number[];
  /** Repetitions of each configuration (best kept): short runs are noisy on a shared 2-core machine. */
  reps: number;
}

const LINKS: Link[] = [
  {
    name: '413 above 1 MB',
    mode: { kind: 'max-body', maxBodyBytes: 1_000_000 },
    sweep: [64 * K, 128 * K, 256 * K, 512 * K, 768 * K, 960 * K],
    quickSweep: [128 * K, 512 * K, 960 * K],
    // Runs of about 2 s: best of 3 against a shared machine's noise.
    reps: 3,
  },
  {
    name: '4 MB/s, 50 ms RTT',
    mode: { kind: 'throttle', bytesPerSecond: 4_000_000, latencyMs: 50 },
    // 64K takes 25 s here and is the slowest by far; the sweep starts above it.
    sweep: [256 * K, 1024 * K, 4096 * K, 16384 * K],
    quickSweep: [256 * K, 1024 * K, 4096 * K],
    reps: 1,
  },
];

interface BatchRow {
  rows: number;
  bytes: number;
  duration_seconds: number;
  outcome: string;
  error_class: string | null;
}

interface RunResult {
  seconds: number;
  rowsPerSecond: number;
  converged: boolean;
  history: BatchRow[];
}

function describeHistory(history: BatchRow[]): string {
  const cell = (b: BatchRow, i: number): string =>
    `#${i + 1} ${kib(b.bytes)}${b.bytes < 16 * K ? ` (${b.rows} rows)` : ''}${b.outcome === 'ok' ? `/${b.duration_seconds.toFixed(2)}s` : ` x ${b.error_class ?? b.outcome}`}`;
  const cells = history.map(cell);
  const shown = cells.length > 60 ? [...cells.slice(0, 45), `... ${cells.length - 55} more ...`, ...cells.slice(-10)] : cells;
  const lines: string[] = [];
  for (let i = 0; i < shown.length; i += 8) lines.push(`    ${shown.slice(i, i + 8).join('  ')}`);
  return lines.join('\n');
}

export async function tunerBench(options: BenchOptions, results: Results): Promise<void> {
  const rows = options.tunerRows;
  log(`tuner: starting an embedded PostgreSQL (${rows.toLocaleString('en-US')} rows)`);
  const cluster = await startEmbeddedCluster();
  try {
    await cluster.createDatabase('tuner_local');
    await cluster.createDatabase('tuner_cloud');
    const localUrl = cluster.url('tuner_local');
    const cloudUrl = cluster.url('tuner_cloud');
    await generateItems(localUrl, rows);
    {
      const pool = new pg.Pool({ connectionString: localUrl, max: 2 });
      await new PgTableTracking(pool).track('public.bench_items');
      await pool.end();
    }
    await sql(localUrl, 'vacuum analyze bench_items');
    const localPrint = await fingerprint(localUrl, 'bench_items');
    const server = await startServerChild(cloudUrl);
    try {
      const reg = await server.register('acme', 'tuner site');
      for (const link of LINKS) {
        const proxy = await startLinkProxy(server.url, link.mode);
        try {
          const run = async (label: string, batch: AgentConfigInput['batch']): Promise<RunResult> => {
            let best: RunResult | null = null;
            for (let rep = 0; rep < (options.quick ? 1 : link.reps); rep++) {
              const r = await runOnce({ localUrl, cloudUrl, serverUrl: proxy.url, reg, rows, batch, label: `${link.name}, ${label}`, localPrint, results });
              if (!best || r.rowsPerSecond > best.rowsPerSecond) best = r;
            }
            return best as RunResult;
          };
          const tuned = await run('tuned', {});
          log(
            `tuner: [${link.name}] tuned: ${rate(rows, tuned.seconds)} in ${secs(tuned.seconds)}, ${tuned.history.length} batches:\n${describeHistory(tuned.history)}`,
          );
          let best: { size: number; run: RunResult } | null = null;
          for (const size of options.quick ? link.quickSweep : link.sweep) {
            // Rows pinned high too, so only the bytes limit cuts a fixed-size batch (the tuner tunes both).
            const r = await run(`fixed ${kib(size)}`, { minBytes: size, maxBytes: size, initialBytes: size, minRows: 200_000, maxRows: 200_000 });
            const failed = r.history.filter((b) => b.outcome !== 'ok').length;
            log(`tuner: [${link.name}] fixed ${kib(size)}: ${rate(rows, r.seconds)} in ${secs(r.seconds)} (${r.history.length} batches, ${failed} failed)`);
            if (r.converged && (!best || r.rowsPerSecond > best.run.rowsPerSecond)) best = { size, run: r };
          }
          if (!best) {
            results.add({ part: PART, metric: `[${link.name}] tuned; no fixed size converged`, value: rate(rows, tuned.seconds) });
            continue;
          }
          const last = tuned.history.filter((b) => b.outcome === 'ok').slice(-5);
          const settled = last.length ? last.reduce((a, b) => a + b.bytes, 0) / last.length : 0;
          results.ratio(
            PART,
            `[${link.name}] tuned vs best fixed (${kib(best.size)}); tuned ends near ${kib(settled)}`,
            rate(rows, tuned.seconds),
            rate(rows, best.run.seconds),
            tuned.rowsPerSecond / best.run.rowsPerSecond,
            '>= 0.8',
          );
        } finally {
          await proxy.close();
        }
      }
    } finally {
      await server.stop();
    }
  } finally {
    await cluster.stop();
  }
}

async function runOnce(p: {
  localUrl: string;
  cloudUrl: string;
  serverUrl: string;
  reg: RegisterResult;
  rows: number;
  batch: AgentConfigInput['batch'];
  label: string;
  localPrint: string;
  results: Results;
}): Promise<RunResult> {
  // From empty each time: no local history (the tuner starts cold), no remote rows or state.
  await sql(p.localUrl, `delete from tidemark.batch_history; delete from tidemark.table_state; delete from tidemark.quarantine`);
  await sql(
    p.cloudUrl,
    `do $$ begin if to_regclass('public.bench_items') is not null then truncate public.bench_items; end if; end $$; delete from tidemark.table_state;`,
  );
  await sql(p.cloudUrl, 'checkpoint');
  const config = loadAgentConfig({
    env: {},
    flags: {
      databaseUrl: p.localUrl,
      serverUrl: p.serverUrl,
      clientId: p.reg.clientId,
      databaseId: p.reg.databaseId,
      apiKey: p.reg.apiKey,
      logLevel: 'silent',
      runBudgetSeconds: 3600,
      verification: { periodHours: 0 },
      batch: p.batch,
    },
  });
  const pool = new pg.Pool({ connectionString: p.localUrl, max: 8 });
  pool.on('error', () => {});
  try {
    const agent = await Agent.create(config, pool, createAgentMetrics(), silentLogger, httpRemoteFactory(config));
    const t0 = performance.now();
    const tick = await agent.tick({ checkCount: true });
    const seconds = (performance.now() - t0) / 1000;
    await agent.stop();
    const t = tick.tables[0];
    const converged = tick.converged && t?.rowsUploaded === p.rows;
    if (!tick.converged) log(`tuner: [${p.label}] did not converge: ${t?.error?.message ?? `quarantined ${t?.quarantined}`}`);
    else {
      const remote = await fingerprint(p.cloudUrl, 'public.bench_items', `tidemark_database_id = '${p.reg.databaseId}'`);
      if (remote !== p.localPrint) p.results.fail(`tuner: [${p.label}] replica differs from local`);
    }
    const history = await sql<BatchRow>(
      p.localUrl,
      `select rows, bytes::float8 as bytes, duration_seconds, outcome, error_class from tidemark.batch_history order by id`,
    );
    return { seconds, rowsPerSecond: converged ? p.rows / seconds : 0, converged, history };
  } finally {
    await pool.end();
  }
}
