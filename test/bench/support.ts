/**
 * What the benchmark parts share: child tidemark processes (server, register, track, sync), /proc
 * sampling of memory and CPU, small PostgreSQL helpers, formatting and the results table.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';
import { freePort } from '../../src/cli/free-port.js';
import type { RegisterResult } from '../../src/shared/protocol.js';

/** A free TCP port on 127.0.0.1 (the CLI needs a concrete one). */
export { freePort };

/** The repository root (dist-bench/test/bench/support.js -> ../../..). */
export const ROOT = resolve(import.meta.dirname, '..', '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
export const PROFILE_DIR = join(ROOT, 'dist-bench', 'profiles');

// --- options and results ---------------------------------------------------------------------

export interface BenchOptions {
  /** Rows of the engine and verification tables. */
  rows: number;
  /** Rows of the tuner table. */
  tunerRows: number;
  /** Write V8 CPU profiles of the agent and server children (engine part) and summarise them. */
  profile: boolean;
  /** Fewer sweep points and cases, for a fast look. */
  quick: boolean;
  /** Skip pg_comparator even when installed. */
  noBaseline: boolean;
  /** Versions the verification table's rows are spread over (1: all at version 0, as rows from before tracking). */
  versions: number;
  /** YAML lines appended to the engine agent's config file, e.g. 'batch: {maxBytes: 8388608}'. */
  agentYaml: string;
  /**
   * The engine's table stored in random key order (as a table with random keys, UUIDs, or one
   * rewritten by years of updates), where (version, key) order and storage order differ.
   */
  shuffled: boolean;
  /** Repetitions of the engine's first sync and raw pipe (best of each is kept). */
  reps: number;
}

export interface ResultRow {
  part: string;
  metric: string;
  value: string;
  baseline?: string;
  /** value / baseline, as the target reads it. */
  ratio?: number;
  /** e.g. '>= 0.6' */
  target?: string;
  met?: boolean;
}

export class Results {
  readonly rows: ResultRow[] = [];
  /** Correctness failures (wrong data after a sync or repair): these, not timings, fail the run. */
  readonly failures: string[] = [];

  add(row: ResultRow): void {
    this.rows.push(row);
  }

  /** A ratio with a target like '>= 0.6' or '<= 0.7'. */
  ratio(part: string, metric: string, value: string, baseline: string, ratio: number, target: string): void {
    const [op, limit] = target.split(' ') as [string, string];
    const met = op === '>=' ? ratio >= Number(limit) : ratio <= Number(limit);
    this.add({ part, metric, value, baseline, ratio, target, met });
  }

  fail(message: string): void {
    this.failures.push(message);
    log(`CORRECTNESS FAILURE: ${message}`);
  }

  table(): string {
    const head = ['part', 'metric', 'tidemark', 'baseline', 'ratio', 'target', 'met'];
    const cells = [
      head,
      ...this.rows.map((r) => [
        r.part,
        r.metric,
        r.value,
        r.baseline ?? '',
        r.ratio === undefined ? '' : r.ratio.toFixed(2),
        r.target ?? '',
        r.met === undefined ? '' : r.met ? 'yes' : 'NO',
      ]),
    ];
    const widths = head.map((_, i) => Math.max(...cells.map((c) => (c[i] ?? '').length)));
    const line = (c: string[]): string =>
      c
        .map((x, i) => x.padEnd(widths[i] ?? 0))
        .join(' | ')
        .trimEnd();
    const sep = widths.map((w) => '-'.repeat(w)).join('-+-');
    return [line(cells[0] as string[]), sep, ...cells.slice(1).map(line)].join('\n');
  }
}

const started = performance.now();

/** Progress goes to stderr with the elapsed time, so stdout keeps the results. */
export function log(line: string): void {
  process.stderr.write(`[${((performance.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
}

// --- formatting ------------------------------------------------------------------------------

export function mb(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function kib(bytes: number): string {
  return `${Math.round(bytes / 1024)}K`;
}

export function rate(rows: number, seconds: number): string {
  return `${Math.round(rows / seconds).toLocaleString('en-US')} rows/s`;
}

export function secs(s: number): string {
  return `${s.toFixed(2)} s`;
}

// --- PostgreSQL ------------------------------------------------------------------------------

export async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export async function sql<R extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  return withClient(url, async (c) => (await c.query<R>(text, values)).rows);
}

/** The benchmark table: ~100 bytes a row in COPY text. */
export const ITEMS_DDL = /* sql */ `
  create table bench_items (
    id bigint primary key,
    account int not null,
    amount numeric(12,2) not null,
    note text not null,
    created_at timestamptz not null
  )`;

/** Rows lo..hi of the benchmark table (deterministic). */
export function itemsInsert(table: string, lo: number, hi: number): string {
  return /* sql */ `
    insert into ${table} (id, account, amount, note, created_at)
    select i, (i * 7919) % 10000, ((i * 104729) % 10000000) / 100.0,
           substr(md5(i::text) || md5((i + 1)::text), 1, 40),
           timestamptz '2024-01-01 00:00:00+00' + i * interval '7.123457 seconds'
      from generate_series(${Math.trunc(lo)}::bigint, ${Math.trunc(hi)}::bigint) i`;
}

/**
 * An order-independent fingerprint of the benchmark columns (count and sum of row hashes),
 * computed independently of tidemark's own manifests, for "identical afterwards" checks.
 */
export async function fingerprint(url: string, table: string, where = 'true'): Promise<string> {
  return withClient(url, async (c) => {
    await c.query(`set timezone = 'UTC'`);
    const { rows } = await c.query<{ n: string; h: string }>(
      `select count(*)::text as n, coalesce(sum(hashtextextended(concat_ws('|', id, account, amount, note, created_at, tidemark_version), 7)::numeric), 0)::text as h
         from ${table} where ${where}`,
    );
    return `${rows[0]?.n}/${rows[0]?.h}`;
  });
}

/** The postmaster's pid, from postmaster.pid in the data directory (the benchmark runs as root or as the cluster's owner). */
export async function postmasterPid(url: string): Promise<number | null> {
  try {
    const [row] = await sql<{ d: string }>(url, `select current_setting('data_directory') as d`);
    const first = readFileSync(join(row?.d ?? '', 'postmaster.pid'), 'utf8').split('\n')[0];
    const pid = Number(first);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

// --- /proc -----------------------------------------------------------------------------------

const CLK_TCK = 100;

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  cpu: number;
  /** cutime + cstime (reaped children), seconds. */
  childCpu: number;
}

export function procStat(pid: number): ProcStat | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return {
      ppid: Number(f[1]),
      cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK,
      childCpu: (Number(f[13]) + Number(f[14])) / CLK_TCK,
    };
  } catch {
    return null;
  }
}

/** CPU seconds used by a PostgreSQL cluster so far: the postmaster, its live children, and the reaped ones. */
export function clusterCpu(postmaster: number | null): number {
  if (postmaster === null) return Number.NaN;
  const root = procStat(postmaster);
  if (!root) return Number.NaN;
  let total = root.cpu + root.childCpu;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = procStat(Number(name));
    if (s && s.ppid === postmaster) total += s.cpu;
  }
  return total;
}

function statusKb(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Polls a process every 50 ms for its peak RSS (VmHWM) and CPU time, until it exits. */
export class ProcSampler {
  peakRssBytes = 0;
  cpuSeconds = 0;
  private timer: NodeJS.Timeout;

  constructor(private readonly pid: number) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 50);
  }

  sample(): void {
    const hwm = statusKb(this.pid, 'VmHWM');
    if (hwm !== null) this.peakRssBytes = Math.max(this.peakRssBytes, hwm * 1024);
    const s = procStat(this.pid);
    if (s) this.cpuSeconds = s.cpu;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

// --- tidemark child processes ----------------------------------------------------------------

export interface ChildRun {
  child: ChildProcess;
  pid: number;
  done: Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }>;
}

/** `node dist/cli/main.js ...args`, with CPU profiling when asked. */
export function spawnCli(args: string[], options: { profileName?: string | undefined; env?: NodeJS.ProcessEnv } = {}): ChildRun {
  const nodeArgs = options.profileName ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, `--cpu-prof-name=${options.profileName}.cpuprofile`] : [];
  const t0 = performance.now();
  const child = spawn(process.execPath, [...nodeArgs, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const done = new Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }>((res, rej) => {
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr, seconds: (performance.now() - t0) / 1000 }));
  });
  if (child.pid === undefined) throw new Error('could not start node');
  return { child, pid: child.pid, done };
}

/** Runs a CLI command to its end; throws with its stderr on a non-zero exit. */
export async function runCli(args: string[]): Promise<string> {
  const r = await spawnCli(args).done;
  if (r.code !== 0) throw new Error(`tidemark ${args[0]} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export interface ServerChild {
  url: string;
  adminKey: string;
  pid: number;
  register(clientId: string, name: string): Promise<RegisterResult>;
  stop(): Promise<void>;
}

const SERVER_ROLE = 'tidemark_bench_server';

/**
 * The URL of `databaseUrl` for the server's own plain role (made once per cluster, given what the
 * README's set-up gives it), so the benchmarks pay what production pays: row-level security does
 * not apply to the embedded cluster's superuser.
 */
async function serverRoleUrl(databaseUrl: string): Promise<string> {
  const url = new URL(databaseUrl);
  const database = decodeURIComponent(url.pathname.slice(1));
  await sql(
    databaseUrl,
    /* sql */ `
    do $$ begin
      if not exists (select from pg_roles where rolname = '${SERVER_ROLE}') then
        create role ${SERVER_ROLE} login password '${SERVER_ROLE}';
      end if;
    end $$;
    grant create, connect on database ${pg.escapeIdentifier(database)} to ${SERVER_ROLE};
    grant usage, create on schema public to ${SERVER_ROLE};`,
  );
  url.username = SERVER_ROLE;
  url.password = SERVER_ROLE;
  return url.toString();
}

/** `tidemark server` as a child process on a free loopback port; resolves when /readyz answers. */
export async function startServerChild(databaseUrl: string, options: { profileName?: string | undefined; maxBodyBytes?: number } = {}): Promise<ServerChild> {
  const port = await freePort();
  const adminKey = `bench-admin-${randomBytes(12).toString('hex')}`;
  // As in production (README, Running it for real): a plain role, for which row-level security applies.
  const args = ['server', '--database', await serverRoleUrl(databaseUrl), '--listen', `127.0.0.1:${port}`, '--admin-key', adminKey, '--log-level', 'warn'];
  if (options.maxBodyBytes) args.push('--max-body-bytes', String(options.maxBodyBytes));
  const run = spawnCli(args, { profileName: options.profileName });
  const url = `http://127.0.0.1:${port}`;
  let exited = false;
  void run.done.then(() => {
    exited = true;
  });
  for (let i = 0; ; i++) {
    if (exited) {
      const r = await run.done;
      throw new Error(`tidemark server exited ${r.code}: ${r.stderr.trim()}`);
    }
    try {
      const res = await fetch(`${url}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (i > 300) throw new Error('tidemark server did not become ready in 30 s');
    await sleep(100);
  }
  return {
    url,
    adminKey,
    pid: run.pid,
    register: async (clientId, name) =>
      JSON.parse(await runCli(['register', '--server', url, '--admin-key', adminKey, '--client', clientId, '--name', name])) as RegisterResult,
    stop: async () => {
      if (exited) return;
      run.child.kill('SIGTERM');
      const timer = setTimeout(() => run.child.kill('SIGKILL'), 10_000);
      await run.done;
      clearTimeout(timer);
    },
  };
}

/** Agent flags for a registration. */
export function agentArgs(localUrl: string, serverUrl: string, reg: RegisterResult): string[] {
  return ['--database', localUrl, '--server', serverUrl, '--client', reg.clientId, '--database-id', reg.databaseId, '--api-key', reg.apiKey];
}

// --- CPU profiles ----------------------------------------------------------------------------

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** The functions with the most self time in a .cpuprofile, as lines. */
export function summariseProfile(path: string, top = 15): string[] {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as { nodes: ProfileNode[]; startTime: number; endTime: number; samples: number[] };
  const total = profile.samples.length || 1;
  const byFn = new Map<string, number>();
  for (const n of profile.nodes) {
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(`${ROOT}/`, '');
    const name = `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
    byFn.set(name, (byFn.get(name) ?? 0) + (n.hitCount ?? 0));
  }
  const seconds = (profile.endTime - profile.startTime) / 1e6;
  return [...byFn.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, hits]) => `${((100 * hits) / total).toFixed(1).padStart(5)}%  ${((seconds * hits) / total).toFixed(2).padStart(6)} s  ${name}`);
}

// --- statement timings from the server log ---------------------------------------------------

/**
 * Where PostgreSQL's time goes, from its own log: with log_min_duration_statement = 0 every
 * statement logs its duration; lines are grouped by database and statement text. Pass `onLog` to
 * startEmbeddedCluster, then enable() around the measured phase.
 */
export class StatementLog {
  private buffer = '';
  private active = false;
  private readonly totals = new Map<string, { ms: number; n: number }>();
  private pending: { prefix: string; ms: number } | null = null;
  private fileOffset = 0;

  /** `logFile`: read the server's log from this file instead of onLog (a cluster started with pg_ctl -l). */
  constructor(private readonly logFile: string | null = null) {}

  readonly onLog = (chunk: string): void => {
    if (!this.active) return;
    this.buffer += chunk.replace(/^\[STDERR\] /, '');
    const lines = this.buffer.split('\n');
    this.buffer = lines.pop() ?? '';
    for (const line of lines) {
      if (this.pending) {
        // A statement that starts with a newline continues on the next (tab-indented) line.
        const text = line.replace(/\s+/g, ' ').trim();
        if (!text) continue;
        this.add(this.pending.prefix + text.slice(0, 90), this.pending.ms);
        this.pending = null;
        continue;
      }
      const m = /^([^|]*)\|.*?duration: ([\d.]+) ms {2}(statement|execute [^:]*|parse [^:]*|bind [^:]*): (.*)$/.exec(line);
      if (!m) continue;
      const kind = (m[3] as string).split(' ')[0] as string;
      const prefix = `${m[1]}: ${kind === 'statement' || kind === 'execute' ? '' : `(${kind}) `}`;
      const text = (m[4] as string).replace(/\s+/g, ' ').trim();
      if (text) this.add(prefix + text.slice(0, 90), Number(m[2]));
      else this.pending = { prefix, ms: Number(m[2]) };
    }
  };

  private add(key: string, ms: number): void {
    const t = this.totals.get(key) ?? { ms: 0, n: 0 };
    t.ms += ms;
    t.n++;
    this.totals.set(key, t);
  }

  async enable(url: string): Promise<void> {
    this.totals.clear();
    await sql(url, `alter system set log_min_duration_statement = 0`);
    await sql(url, `alter system set log_line_prefix = '%d|'`);
    await sql(url, `select pg_reload_conf()`);
    await sleep(300);
    if (this.logFile) this.fileOffset = statSync(this.logFile).size;
    this.active = true;
  }

  async disable(url: string): Promise<void> {
    await sql(url, `alter system reset log_min_duration_statement`);
    await sql(url, `alter system reset log_line_prefix`);
    await sql(url, `select pg_reload_conf()`);
    await sleep(300);
    if (this.logFile) {
      const text = readFileSync(this.logFile).subarray(this.fileOffset).toString('utf8');
      this.onLog(`${text}\n`);
    }
    this.active = false;
  }

  /** Total seconds of the statements whose key (`database: text`) matches. */
  seconds(match: RegExp): number {
    let ms = 0;
    for (const [k, t] of this.totals) if (match.test(k)) ms += t.ms;
    return ms / 1000;
  }

  /** The statements with the most total time. */
  top(n = 10): string[] {
    return [...this.totals.entries()]
      .sort((a, b) => b[1].ms - a[1].ms)
      .slice(0, n)
      .map(([k, t]) => `${(t.ms / 1000).toFixed(2).padStart(7)} s  ${String(t.n).padStart(5)}x  ${k}`);
  }
}

/**
 * Counts of backends' states, sampled from pg_stat_activity every 100 ms: by default the tidemark
 * server's backends; `everyDatabase` takes every client backend of the cluster and names each state
 * by its database ("bench_cloud CPU"), for a run whose agent and server share one cluster. The
 * extension-lock figures (`extend`, `extendOn`) are the server's, by default only: with
 * `everyDatabase` the relations' locks are not sampled (one query a sample, not two).
 */
export class WaitSampler {
  private readonly counts = new Map<string, number>();
  private readonly extendOn = new Map<string, number>();
  private samples = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    url: string,
    private readonly options: { label: string; everyDatabase?: boolean },
  ) {
    this.done = this.loop(url);
  }

  private async loop(url: string): Promise<void> {
    const c = new pg.Client({ connectionString: url });
    c.on('error', (e) => log(`${this.options.label}: the wait sampler's connection failed: ${e.message}`));
    const state = `case when state = 'active' and wait_event is null then 'CPU' else coalesce(wait_event_type || ':' || wait_event, state) end`;
    const which = this.options.everyDatabase ? `backend_type = 'client backend'` : `application_name = 'tidemark-server'`;
    const named = this.options.everyDatabase ? `datname || ' ' || ${state}` : state;
    await c.connect();
    try {
      while (this.running) {
        const { rows } = await c.query<{ ev: string; n: number }>(
          /* sql */ `select ${named} as ev, count(*)::int as n
                         from pg_stat_activity
                        where ${which} and state <> 'idle' and pid <> pg_backend_pid()
                        group by 1`,
        );
        this.samples++;
        for (const r of rows) this.counts.set(r.ev, (this.counts.get(r.ev) ?? 0) + r.n);
        if (!this.options.everyDatabase) {
          // Which relation the extension waits are for: the heap, or one of its indexes.
          const ext = await c.query<{ rel: string; n: number }>(
            /* sql */ `select l.relation::regclass::text as rel, count(*)::int as n from pg_locks l
                          where l.locktype = 'extend' and not l.granted and l.database = (select oid from pg_database where datname = current_database())
                          group by 1`,
          );
          for (const r of ext.rows) this.extendOn.set(r.rel, (this.extendOn.get(r.rel) ?? 0) + r.n);
        }
        await sleep(100);
      }
    } finally {
      await c.end();
    }
  }

  /** The most frequent states, as the mean number of backends in each: "Lock:extend 12.3, CPU 2.0". */
  async stop(top = 5): Promise<{ text: string; busy: number; extend: number; extendOn: string }> {
    this.running = false;
    await this.done;
    const n = Math.max(1, this.samples);
    const sorted = [...this.counts.entries()].sort((a, b) => b[1] - a[1]);
    const busy = sorted.reduce((s, [, k]) => s + k, 0) / n;
    return {
      text: sorted
        .slice(0, top)
        .map(([ev, k]) => `${ev} ${(k / n).toFixed(1)}`)
        .join(', '),
      busy,
      extend: (this.counts.get('Lock:extend') ?? 0) / n,
      extendOn: [...this.extendOn.entries()]
        .sort((a, b) => b[1] - a[1])
        .map(([rel, k]) => `${rel.replace(/^.*_tm_/, 'tm_')} ${(k / n).toFixed(1)}`)
        .join(', '),
    };
  }
}
