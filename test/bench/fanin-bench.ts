/**
 * Part `fanin` (issue 10, target 5): many agents' first syncs at once into ONE replica table.
 *
 * The server runs as its own process (`tidemark server`) on an embedded PostgreSQL (and, with
 * TIDEMARK_BENCH_FANIN_PG=18,15, on the system's PostgreSQL 15 too). N tenants are registered
 * through the admin API and declare the same table (bench_items' shape: one shared replica table);
 * then N simulated uploaders send first-sync batches at once: the requests the agent's uploader
 * makes (POST .../tables/{table}?insertOnly=true, COPY text of ~4 MiB, http-remote.ts), each
 * uploader's batches one after the other, a 503 TM_SERVER_OVERLOADED waited out (2 s, the server's Retry-After)
 * and sent again as the agent does, a connection reset retried twice. Simulated, not N real agents with N local databases: one
 * machine cannot host them, and the server cannot tell the difference. Every uploader sends the
 * same batches (the tenant columns keep them apart), so a round costs one batch set of memory.
 *
 * Per round (N = 8 and 32 by default): aggregate rows/s, answers by status (any non-2xx is an
 * error), the server's backends' wait events sampled from pg_stat_activity every 100 ms, WAL bytes
 * per byte sent (pg_current_wal_lsn) with the WAL records and full-page images (pg_stat_wal),
 * and the ratio of the largest N to the smallest, which the target wants at 1.0 or more. Rounds run per variant: `unlimited` (no admission control: every
 * upload loads at once, as before) and `admission` (the server's default), each variant on a fresh
 * server, each round into a fresh replica table.
 *
 * Env TIDEMARK_BENCH_FANIN_: AGENTS (8,32), BATCHES (total batches per round, 32; --quick 16), REPEATS
 * (3: rounds run 8, 32, 32, 8, 8, 32, and each N's rows/s is over its rounds; single rounds of one
 * configuration differ by a tenth and more here),
 * BATCH_BYTES (4 MiB), VARIANTS (unlimited,admission; also `k<K>` for admission with K slots),
 * PG (18; 18,15 adds the system PostgreSQL 15), PG_LOG (a file for the embedded cluster's log).
 */
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';

import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { COPY_CONTENT_TYPE, type RegisterResult, ROUTES, type TableDeclaration, tablePath } from '../../src/shared/protocol.js';
import { FleetHttp, pool } from './fleet-load.js';
import { startPg15Cluster } from './pg15-cluster.js';
import { type BenchOptions, log, mb, type Results, sql, startServerChild, WaitSampler } from './support.js';

const PART = 'fanin';
/** Each round loads a fresh table of its own (fanin_items_8, ...): first syncs into an empty replica, rounds alike. */
const TABLE = 'fanin_items';
/** The agent's tries of one shed batch (uploader.ts); the wait is the server's Retry-After, 2 s. */
const OVERLOAD_RETRIES = 3;
const NETWORK_RETRIES = 2;
const RETRY_AFTER_SECONDS = 2;

const DECLARATION: TableDeclaration = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'bigint', notNull: true },
    { name: 'account', type: 'integer', notNull: true },
    { name: 'amount', type: 'numeric(12,2)', notNull: true },
    { name: 'note', type: 'text', notNull: true },
    { name: 'created_at', type: 'timestamp with time zone', notNull: true },
  ],
  keyColumns: ['id'],
};

function envText(name: string, fallback: string): string {
  return process.env[`TIDEMARK_BENCH_FANIN_${name}`] || fallback;
}

function envInts(name: string, fallback: string): number[] {
  return envText(name, fallback)
    .split(',')
    .map(Number)
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** First-sync batches of bench_items rows (support.ts's shape, ~100 bytes a row), each about `bytes` long. */
function makeBatches(count: number, bytes: number): { bodies: Buffer[]; rowsPerBatch: number; rows: number } {
  const bodies: Buffer[] = [];
  let id = 0;
  let rowsPerBatch = 0;
  const t0 = Date.parse('2024-01-01T00:00:00Z');
  for (let b = 0; b < count; b++) {
    const lines: string[] = [];
    let size = 0;
    while (size < bytes && (rowsPerBatch === 0 || lines.length < rowsPerBatch)) {
      id++;
      const note = `${(id * 2654435761).toString(16).padStart(12, '0')}${'abcdefghijklmnopqrstuvwxyz0123456789'.slice(id % 9)}`.slice(0, 40);
      const line = `${1000 + id}\t${id}\t${(id * 7919) % 10000}\t${(((id * 104729) % 10000000) / 100).toFixed(2)}\t${note}\t${new Date(t0 + id * 7123).toISOString()}\n`;
      lines.push(line);
      size += line.length;
    }
    if (rowsPerBatch === 0) rowsPerBatch = lines.length;
    bodies.push(Buffer.from(lines.join('')));
  }
  return { bodies, rowsPerBatch, rows: id };
}

interface Round {
  agents: number;
  rows: number;
  seconds: number;
  rowsPerSecond: number;
  statuses: string;
  errors: number;
  waits: string;
  busyBackends: number;
  extendBackends: number;
  walPerByte: number;
  /** WAL records and full-page images written in the round, the whole cluster's (pg_stat_wal). */
  walRecords: number;
  walFpi: number;
  bytesSent: number;
}

async function walLsn(url: string): Promise<string> {
  const [row] = await sql<{ lsn: string }>(url, `select pg_current_wal_lsn()::text as lsn`);
  return row?.lsn ?? '0/0';
}

/** Cluster-wide WAL records and full-page images so far (pg_stat_wal). */
async function walStats(url: string): Promise<{ records: number; fpi: number }> {
  const [row] = await sql<{ records: string; fpi: string }>(url, `select wal_records::text as records, wal_fpi::text as fpi from pg_stat_wal`);
  return { records: Number(row?.records ?? 0), fpi: Number(row?.fpi ?? 0) };
}

async function walSince(url: string, lsn: string): Promise<number> {
  const [row] = await sql<{ d: string }>(url, `select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::text as d`, [lsn]);
  return Number(row?.d ?? 0);
}

/** One round: `agents` tenants declare the table, then upload their batches all at once. */
async function round(
  serverUrl: string,
  adminKey: string,
  dbUrl: string,
  agents: number,
  tag: string,
  tableName: string,
  batches: { bodies: Buffer[]; rows: number },
): Promise<Round> {
  const http = new FleetHttp(serverUrl, agents + 4);
  try {
    const json = { 'content-type': 'application/json' };
    const tenants: (RegisterResult & { agentId: string })[] = [];
    await pool(agents, 4, async (i) => {
      const a = await http.send(
        'POST',
        ROUTES.adminDatabases.replace(':clientId', `${tag}c${String(i).padStart(3, '0')}`),
        JSON.stringify({ name: `site ${i}` }),
        {
          authorization: `Bearer ${adminKey}`,
          ...json,
        },
      );
      if (a.status !== 200 && a.status !== 201) throw new Error(`register: ${a.status} ${a.text}`);
      tenants[i] = { ...(JSON.parse(a.text) as RegisterResult), agentId: randomUUID() };
    });
    const table = { schema: 'public', name: tableName };
    const headers = (t: RegisterResult & { agentId: string }, extra: Record<string, string>): Record<string, string> => ({
      authorization: `Bearer ${t.apiKey}`,
      'x-tidemark-agent-id': t.agentId,
      ...extra,
    });
    const declare = async (i: number): Promise<void> => {
      const t = tenants[i] as RegisterResult & { agentId: string };
      const a = await http.send('PUT', tablePath(t.clientId, t.databaseId, table), JSON.stringify(DECLARATION), headers(t, json));
      if (a.status !== 200) throw new Error(`declare: ${a.status} ${a.text}`);
    };
    // The first declaration creates the replica table, alone.
    await declare(0);
    await pool(agents - 1, 4, (i) => declare(i + 1));
    http.errors.clear();

    const statuses = new Map<number, number>();
    let bytesSent = 0;
    let rows = 0;
    let lastFailure = '';
    const upload = async (i: number): Promise<void> => {
      const t = tenants[i] as RegisterResult & { agentId: string };
      const path = `${tablePath(t.clientId, t.databaseId, table)}?insertOnly=true`;
      for (const body of batches.bodies) {
        for (let attempt = 0; ; attempt++) {
          bytesSent += body.length;
          // A connection reset (the server answered before reading the body, then closed) is status 0.
          const a = await http.send('POST', path, body, headers(t, { 'content-type': COPY_CONTENT_TYPE })).catch((e: unknown) => {
            lastFailure = (e as Error).message;
            return { status: 0, text: '' };
          });
          statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
          if (a.status === 200) {
            rows += (JSON.parse(a.text) as { rowsInserted: number }).rowsInserted;
            break;
          }
          // What the agent does with a shed batch: wait its Retry-After, send it again, a few times.
          if (a.status === 503 && a.text.includes('TM_SERVER_OVERLOADED') && attempt < OVERLOAD_RETRIES) {
            await sleep(RETRY_AFTER_SECONDS * 1000);
            continue;
          }
          // The agent retries a reset twice, quickly.
          if (a.status === 0 && attempt < NETWORK_RETRIES) {
            await sleep(250 * 2 ** attempt);
            continue;
          }
          return; // the agent's run would fail here; counted in statuses
        }
      }
    };
    const lsn = await walLsn(dbUrl);
    const stats0 = await walStats(dbUrl);
    const sampler = new WaitSampler(dbUrl, { label: 'fanin' });
    const t0 = performance.now();
    const outcomes = await Promise.allSettled(Array.from({ length: agents }, (_, i) => upload(i)));
    const seconds = (performance.now() - t0) / 1000;
    const waits = await sampler.stop();
    for (const o of outcomes) if (o.status === 'rejected') throw o.reason;
    if (lastFailure) log(`  last connection failure: ${lastFailure}`);
    const wal = await walSince(dbUrl, lsn);
    const stats1 = await walStats(dbUrl);
    const expected = agents * batches.rows;
    const [count] = await sql<{ n: string }>(dbUrl, `select count(*)::text as n from public.${tableName} where tidemark_client_id like $1::text`, [`${tag}c%`]);
    const errors = [...statuses.entries()].filter(([s]) => s < 200 || s >= 300).reduce((s, [, k]) => s + k, 0);
    if (Number(count?.n) !== rows) throw new Error(`the replica holds ${count?.n} rows of this round, the answers said ${rows}`);
    return {
      agents,
      rows,
      seconds,
      rowsPerSecond: rows / seconds,
      statuses:
        [...statuses.entries()]
          .sort((a, b) => a[0] - b[0])
          .map(([s, k]) => `${k}x${s === 0 ? 'reset' : s}`)
          .join(' ') + (rows < expected ? ` (${expected - rows} rows not loaded)` : ''),
      errors,
      waits: waits.text + (waits.extendOn ? ` (extend waits on: ${waits.extendOn})` : ''),
      busyBackends: waits.busy,
      extendBackends: waits.extend,
      walPerByte: wal / bytesSent,
      walRecords: stats1.records - stats0.records,
      walFpi: stats1.fpi - stats0.fpi,
      bytesSent,
    };
  } finally {
    http.close();
  }
}

interface Cluster {
  url(db: string): string;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

export async function faninBench(options: BenchOptions, results: Results): Promise<void> {
  const agentsList = envInts('AGENTS', '8,32');
  const totalBatches = envInts('BATCHES', options.quick ? '16' : '32')[0] as number;
  const batchBytes = envInts('BATCH_BYTES', String(4 * 1024 * 1024))[0] as number;
  const variants = envText('VARIANTS', 'unlimited,admission').split(',');
  const majors = envInts('PG', '18');
  const maxAgents = Math.max(...agentsList);
  const repeats = envInts('REPEATS', '3')[0] as number;
  /** rows/s by variant and uploaders, for ratios across variants. */
  const rateOf = new Map<string, Map<number, number>>();
  /** A ratio; the target (no collapse: 1.0 or more) is for the server as it is, not for the `unlimited` baseline. */
  const ratio = (metric: string, value: number | undefined, baseline: number | undefined, targeted = true): void => {
    if (value === undefined || baseline === undefined) return;
    const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
    if (targeted) results.ratio(PART, metric, fmt(value), fmt(baseline), value / baseline, '>= 1.0');
    else results.add({ part: PART, metric, value: fmt(value), baseline: fmt(baseline), ratio: value / baseline });
  };
  log(
    `fanin: ${agentsList.join(', ')} uploaders; ${totalBatches} batches of ${mb(batchBytes)} a round; variants ${variants.join(', ')}; load ${loadavg()[0]?.toFixed(1)}`,
  );
  for (const major of majors) {
    const pgLog = process.env.TIDEMARK_BENCH_FANIN_PG_LOG;
    const cluster: Cluster =
      major === 15 ? await startPg15Cluster() : await startEmbeddedCluster(pgLog ? { onLog: (line) => appendFileSync(pgLog, `${line}\n`) } : {});
    try {
      for (const variant of variants) {
        const db = `fanin_${variant}`;
        await cluster.createDatabase(db);
        const dbUrl = cluster.url(db);
        // `unlimited`: more slots than uploaders, i.e. no admission control (the server before).
        const k = variant === 'unlimited' ? String(maxAgents + 100) : variant.startsWith('k') ? variant.slice(1) : '';
        const saved = process.env.TIDEMARK_UPLOAD_MAX_CONCURRENT;
        if (k) process.env.TIDEMARK_UPLOAD_MAX_CONCURRENT = k;
        else delete process.env.TIDEMARK_UPLOAD_MAX_CONCURRENT;
        const server = await startServerChild(dbUrl);
        if (saved === undefined) delete process.env.TIDEMARK_UPLOAD_MAX_CONCURRENT;
        else process.env.TIDEMARK_UPLOAD_MAX_CONCURRENT = saved;
        try {
          // Rounds in the order 8, 32, 32, 8, 8, 32 (REPEATS 3): a load that drifts during the run weighs on both alike.
          const byAgents = new Map<number, Round[]>();
          for (let rep = 0; rep < repeats; rep++) {
            for (const agents of rep % 2 === 0 ? agentsList : [...agentsList].reverse()) {
              const batches = makeBatches(Math.max(1, Math.round(totalBatches / agents)), batchBytes);
              log(
                `fanin pg${major} ${variant}: ${agents} uploaders x ${batches.bodies.length} batches of ${batches.rowsPerBatch} rows (load ${loadavg()[0]?.toFixed(1)})`,
              );
              await sql(dbUrl, 'checkpoint');
              // Client ids of one length in every round: the id is in every row and both index entries,
              // and two characters more (c17 in a round of 32 against c3 in one of 8) cost the 32s'
              // rounds 9% more WAL and about 5% of their rate (an index entry's key crossed an 8-byte
              // alignment boundary): 32 vs 8 measured 0.88 to 0.95 with it, 1.06 without.
              const tag = `v${variants.indexOf(variant)}n${String(agents).padStart(3, '0')}r${rep}`;
              const r = await round(server.url, server.adminKey, dbUrl, agents, tag, `${TABLE}_${agents}_${rep}`, batches);
              log(
                `  ${Math.round(r.rowsPerSecond).toLocaleString('en-US')} rows/s (${r.rows} rows in ${r.seconds.toFixed(1)} s); answers ${r.statuses}; WAL/byte ${r.walPerByte.toFixed(2)} (${r.walRecords.toLocaleString('en-US')} records, ${r.walFpi.toLocaleString('en-US')} full-page images); backends ${r.waits}`,
              );
              byAgents.set(agents, [...(byAgents.get(agents) ?? []), r]);
            }
          }
          const rates = new Map<number, number>();
          for (const agents of agentsList) {
            const rs = byAgents.get(agents) ?? [];
            const rate = rs.reduce((a, r) => a + r.rows, 0) / rs.reduce((a, r) => a + r.seconds, 0);
            rates.set(agents, rate);
            const label = `pg${major} ${variant}, ${agents} first syncs at once`;
            const sent = rs.reduce((a, r) => a + r.bytesSent, 0);
            results.add({
              part: PART,
              metric: `${label}: rows/s`,
              value: `${Math.round(rate).toLocaleString('en-US')} (${rs.length} rounds, ${mb(sent)} sent)`,
            });
            results.add({
              part: PART,
              metric: `${label}: answers`,
              value: rs.map((r) => r.statuses).join(' | '),
              met: rs.every((r) => r.errors === 0),
            });
            results.add({ part: PART, metric: `${label}: backends (mean, round 1)`, value: `${rs[0]?.busyBackends.toFixed(1)} busy: ${rs[0]?.waits}` });
            results.add({ part: PART, metric: `${label}: WAL bytes per byte sent`, value: rs.map((r) => r.walPerByte.toFixed(2)).join(', ') });
          }
          rateOf.set(`pg${major} ${variant}`, rates);
          const lo = agentsList[0] as number;
          if (maxAgents !== lo)
            ratio(`pg${major} ${variant}: rows/s ${maxAgents} vs ${lo} first syncs at once`, rates.get(maxAgents), rates.get(lo), variant !== 'unlimited');
          const before = rateOf.get(`pg${major} unlimited`)?.get(lo);
          if (variant !== 'unlimited' && before !== undefined)
            ratio(`pg${major} ${variant}, ${maxAgents} at once vs unlimited (the server before), ${lo} at once`, rates.get(maxAgents), before);
        } finally {
          await server.stop();
        }
      }
    } finally {
      await cluster.stop();
    }
  }
  log(`fanin: done (load ${loadavg()[0]?.toFixed(1)})`);
}
