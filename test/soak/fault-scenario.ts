/**
 * The field's fault mix, small and seeded (issue 9): `tidemark server` and `tidemark agent` as real
 * child processes, a fault-injecting TCP proxy between them (test/support/tcp-proxy.ts), the agent
 * and the server killed with SIGKILL and restarted, the local database restarted with `pg_ctl
 * restart -m immediate` (a dedicated cluster), and a seeded writer doing inserts, updates, key
 * updates, deletes and rollbacks throughout. Used by test/integration/fault-injection.test.ts (one
 * cycle) and `npm run soak` (many).
 *
 * Phases follow events and counts ("the proxy has seen N more requests", "the agent logged a tick"),
 * never sleeps: how fast the machine is changes how long a phase takes, not its outcome. A cycle:
 *  1. (first cycle) an interrupted first sync: the agent is killed once the server has applied a
 *     third of the table; the next agent must go on from there (each row sent at most once more);
 *  2. rounds of the random mix, each ending with one disruption in seeded order: agent killed and
 *     restarted, server killed and restarted (the proxy answers 503 meanwhile), local database
 *     restarted under the running agent (which must ride it out);
 *  3. scripted faults, under the running agent: an upload cut mid-body (the server must drop it and
 *     free its connection), an upload held by the proxy and replayed after newer versions of its
 *     rows were applied (it must not overwrite them), and a 502/503 after the server committed a
 *     one-row upload (the row must not stay quarantined).
 * It ends by running `sync --once` until it converges (a bounded number of attempts), then checks:
 * rows equal on both sides, the server's O(1) row count equal to count(*), no quarantined row that
 * is equal on both sides, no unhandled error or unexpected exit in any process, the server not
 * logging client resets as errors, no server database session left busy once every client has gone,
 * the server stopping on SIGTERM. Every failed check is a line in `violations`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { freePort } from '../../src/cli/free-port.js';
import { seededRandom } from '../support/seeded-random.js';
import { type FaultKind, type FaultMix, type FaultProxy, type ProxiedRequest, startFaultProxy } from '../support/tcp-proxy.js';
import { type LocalCluster, startLocalCluster } from './local-cluster.js';
import { Daemon, type ProcessLog as Log, type LogLine, ProcessLog, parseLogLine, tidemark } from './processes.js';
import { SCHEMA_SQL, SeededWriter, seedSql, type WriteKind } from './seeded-writer.js';

export type Disruption = 'agent-kill' | 'server-kill' | 'local-restart' | 'cloud-restart';

export interface ScenarioOptions {
  seed: number;
  /** Database for the server (any PostgreSQL; the server migrates it). */
  cloudUrl: string;
  /** Cycles (phases 2 and 3; phase 1 runs once). */
  cycles: number;
  /** Rounds of the random mix per cycle; each ends with a disruption. */
  roundsPerCycle: number;
  /** Requests the proxy must see in a round before its disruption. */
  requestsPerRound: number;
  /** Rows of `items` and `pairs` before the first sync. */
  items: number;
  pairs: number;
  /** Rows per upload batch (small, so that a first sync takes many batches). */
  batchRows: number;
  mix: FaultMix;
  /** `sync --once` runs allowed to reach convergence at the end. */
  maxSyncAttempts: number;
  /** Longest wait for any one event (a bound for failures, not a pace). */
  eventTimeoutMs: number;
  /** Restarts the server's database (immediate mode); when given, cloud restarts join the disruptions. */
  restartCloud?: () => Promise<void>;
  progress?: (line: string) => void;
  /** Where to write every line every process printed (for a failed run's post-mortem). */
  logFile?: string;
}

export const DEFAULT_MIX: FaultMix = { resetMidBody: 0.06, resetAfterResponse: 0.06, statusBefore: 0.05, statusAfter: 0.05, delay: 0.1, maxDelayMs: 300 };

export interface TableOutcome {
  table: string;
  localRows: number;
  remoteRows: number;
  /** The server's O(1) row count (summary rowCount). */
  summaryRowCount: number | null;
  lost: number;
  extra: number;
  stale: number;
  quarantined: number;
  quarantinedButEqual: number;
}

export interface ScenarioReport {
  seed: number;
  durationSeconds: number;
  requests: number;
  faults: Record<FaultKind, number>;
  disruptions: Record<Disruption | 'replay', number>;
  writes: Record<WriteKind, number>;
  writesInterrupted: number;
  firstSync: { rows: number; appliedBeforeKill: number; sentAfterRestart: number } | null;
  syncAttempts: number;
  tables: TableOutcome[];
  /** Error-level lines by process kind (not failures by themselves). */
  errorLines: Record<string, number>;
  /** Every failed check, in words. Empty means the run passed. */
  violations: string[];
}

interface Row {
  key: string;
  text: string;
}

/** Upload requests in flight during the first sync (the agent's default): the batches a killed agent may send again. */
const FIRST_SYNC_IN_FLIGHT = 2;

const TABLES = [
  { name: 'items', key: `id::text` },
  { name: 'pairs', key: `site || '/' || code::text` },
] as const;

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end().catch(() => {});
  }
}

/** Polls `predicate` until it holds (events in processes and databases have no callback here); throws after `timeoutMs`. */
async function until(what: string, predicate: () => boolean | Promise<boolean>, timeoutMs: number, tick?: () => Promise<void>): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    await tick?.();
    if (await predicate()) return;
    if (Date.now() > end) throw new Error(`gave up after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Resolves with `promise`, running the watchdog meanwhile; throws after the event timeout. */
async function within<T>(promise: Promise<T>, what: string, wait: (what: string, predicate: () => boolean) => Promise<void>): Promise<T> {
  const box: { value?: T; done: boolean } = { done: false };
  void promise.then((v) => {
    box.value = v;
    box.done = true;
  });
  await wait(what, () => box.done);
  return box.value as T;
}

function tickDone(l: LogLine): { converged: boolean } | null {
  const p = parseLogLine(l.text);
  return p && p.msg === 'tick done' ? { converged: p.converged === true } : null;
}

export async function runFaultScenario(options: ScenarioOptions): Promise<ScenarioReport> {
  const started = performance.now();
  const say = options.progress ?? (() => {});
  const random = seededRandom(options.seed ^ 0xfa11);
  const log = new ProcessLog();
  const violations: string[] = [];
  const disruptions: Record<Disruption | 'replay', number> = { 'agent-kill': 0, 'server-kill': 0, 'local-restart': 0, 'cloud-restart': 0, replay: 0 };
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-field-run-'));
  /** Set as soon as the cluster has booted (from a callback), so that it is always stopped. */
  const owned: { cluster: LocalCluster | null } = { cluster: null };
  let proxy: FaultProxy | null = null;
  let writer: SeededWriter | null = null;
  let server: Daemon | null = null;
  let agent: Daemon | null = null;
  let firstSync: ScenarioReport['firstSync'] = null;
  let syncAttempts = 0;
  const tables: TableOutcome[] = [];
  try {
    // --- set-up: a dedicated local cluster, the server, registration, tracking, the proxy ---------
    const serverPort = await freePort();
    const serverUrl = `http://127.0.0.1:${serverPort}`;
    const adminKey = `admin-${randomBytes(12).toString('hex')}`;
    server = new Daemon('server', ['server', '--database', options.cloudUrl, '--listen', `127.0.0.1:${serverPort}`, '--log-level', 'info'], log, {
      TIDEMARK_ADMIN_KEY: adminKey,
      // The test clusters have only a superuser; a server refuses one unless told this is a test.
      TIDEMARK_ALLOW_SUPERUSER: '1',
    });
    const serverReady = (l: LogLine): boolean => parseLogLine(l.text)?.msg === 'server listening';
    const sv0 = server;
    // The local cluster boots while the server starts and the database is registered.
    const booting = startLocalCluster().then((c) => {
      owned.cluster = c;
      return c;
    });
    const registering = sv0
      .start(serverReady)
      .then(() => tidemark(['register', '--server', serverUrl, '--admin-key', adminKey, '--client', 'field', '--name', 'field'], log, 'register'));
    // Both settle before anything can fail, so that a cluster that booted is always stopped.
    const [booted, registered] = await Promise.allSettled([booting, registering]);
    if (booted.status === 'rejected') throw booted.reason;
    if (registered.status === 'rejected') throw registered.reason;
    const localCluster = booted.value;
    const reg = registered.value;
    if (reg.code !== 0) throw new Error(`register failed: ${reg.stderr}`);
    const creds = JSON.parse(reg.stdout) as { clientId: string; databaseId: string; apiKey: string };
    const localUrl = `${localCluster.baseUrl}field`;
    await withClient(`${localCluster.baseUrl}postgres`, (c) => c.query('create database field'));
    await withClient(localUrl, async (c) => {
      await c.query(SCHEMA_SQL);
      await c.query(seedSql(options.items, options.pairs));
    });
    const track = await tidemark(['track', '--database', localUrl, 'public.items', 'public.pairs'], log, 'track');
    if (track.code !== 0) throw new Error(`track failed: ${track.stderr}`);
    proxy = await startFaultProxy({ upstreamPort: serverPort, seed: options.seed });
    say('set-up done: local cluster, server, registration, tracking, proxy');
    const px = proxy;
    const configFile = join(dir, 'agent.yaml');
    writeFileSync(
      configFile,
      [
        `databaseUrl: ${JSON.stringify(localUrl)}`,
        `serverUrl: ${JSON.stringify(proxy.url)}`,
        `clientId: ${creds.clientId}`,
        `databaseId: ${creds.databaseId}`,
        'apiKey: { env: TIDEMARK_API_KEY }',
        `schedule: '* * * * * *'`,
        `metricsListen: ''`,
        'concurrency: 2',
        // No rolling verification: it repairs whatever differences its slice happens to cover, which
        // would hide a stale overwrite or a lost row by chance. This test wants none to happen.
        'verification: { periodHours: 0 }',
        `batch: { maxRows: ${options.batchRows}, minBytes: 1024, initialBytes: 1048576, timeoutSeconds: 30, firstSyncInFlight: ${FIRST_SYNC_IN_FLIGHT} }`,
      ].join('\n'),
    );
    const env = { TIDEMARK_API_KEY: creds.apiKey };
    agent = new Daemon('agent', ['agent', '--config', configFile, '--log-level', 'info'], log, env);
    const agentReady = (l: LogLine): boolean => parseLogLine(l.text)?.msg === 'agent started';
    const syncOnce = (name: string) => tidemark(['sync', '--once', '--config', configFile], log, name, env);

    const ag = agent;
    const sv = server;
    /** Restarts a daemon that died by itself (the crash is already on record as an unexpected exit). */
    let agentWanted = false;
    const watchdog = async (): Promise<void> => {
      if (!sv.running) await sv.start(serverReady);
      if (agentWanted && !ag.running) await ag.start(agentReady);
    };
    const wait = (what: string, predicate: () => boolean | Promise<boolean>) => until(what, predicate, options.eventTimeoutMs, watchdog);
    const uploadsOf = (table: string, from: number): ProxiedRequest[] =>
      px.requests.slice(from).filter((r) => r.route === 'upload' && r.table === `public.${table}` && r.bodyRows > 0);

    // --- phase 1: an interrupted first sync --------------------------------------------------
    say(`phase 1: first sync of ${options.items} + ${options.pairs} rows, agent killed a third of the way`);
    agentWanted = true;
    await ag.start(agentReady);
    const third = Math.ceil(options.items / 3);
    const appliedItems = (from: number): number => uploadsOf('items', from).reduce((n, r) => n + (r.serverStatus === 200 ? r.bodyRows : 0), 0);
    await wait(`the server to apply ${third} rows of items`, () => appliedItems(0) >= third);
    agentWanted = false;
    await ag.kill();
    disruptions['agent-kill']++;
    say(`phase 1: agent killed after ${appliedItems(0)} rows applied`);
    await wait('the killed agent’s requests to settle', () => px.requests.every((r) => r.done));
    const appliedBeforeKill = appliedItems(0);
    const restartIndex = px.requests.length;
    const ticksBefore = log.lines.length;
    agentWanted = true;
    await ag.start(agentReady);
    await wait('a converged tick after the restart', () => log.lines.slice(ticksBefore).some((l) => l.process.startsWith('agent') && tickDone(l)?.converged));
    const sentAfterRestart = uploadsOf('items', restartIndex).reduce((n, r) => n + r.bodyRows, 0);
    firstSync = { rows: options.items, appliedBeforeKill, sentAfterRestart };
    say(`phase 1: the restarted agent converged after sending ${sentAfterRestart} rows of items`);
    // What was in flight when the agent died may be sent again: FIRST_SYNC_IN_FLIGHT batches at most.
    const resendable = FIRST_SYNC_IN_FLIGHT * options.batchRows;
    if (sentAfterRestart > options.items - appliedBeforeKill + resendable)
      violations.push(
        `interrupted first sync started over: the server had applied ${appliedBeforeKill} of ${options.items} rows when the agent was killed, and the next agent sent ${sentAfterRestart} (at most ${options.items - appliedBeforeKill + resendable} expected)`,
      );

    writer = new SeededWriter(localUrl, options.seed, { items: options.items, pairs: options.pairs });
    const wr = writer;
    const cl = localCluster;
    for (let cycle = 0; cycle < options.cycles; cycle++) {
      // --- phase 2: the random mix with disruptions ------------------------------------------
      px.setMix(options.mix);
      wr.start(10);
      agentWanted = true;
      if (!ag.running) await ag.start(agentReady);
      const order: Disruption[] = ['agent-kill', 'server-kill', 'local-restart', ...(options.restartCloud ? (['cloud-restart'] as const) : [])];
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(random() * (i + 1));
        [order[i], order[j]] = [order[j] as Disruption, order[i] as Disruption];
      }
      for (let round = 0; round < options.roundsPerCycle; round++) {
        const disruption = order[round % order.length] as Disruption;
        const base = px.requests.length;
        await wait(`${options.requestsPerRound} requests in round ${round + 1}`, () => px.requests.length >= base + options.requestsPerRound);
        say(`cycle ${cycle + 1} round ${round + 1}: ${px.requests.length} requests, ${disruption}`);
        disruptions[disruption]++;
        if (disruption === 'agent-kill') {
          agentWanted = false;
          await ag.kill();
          await wr.written(5);
          agentWanted = true;
          await ag.start(agentReady);
        } else if (disruption === 'server-kill') {
          await sv.kill();
          const down = px.requests.length;
          // The agent meets the proxy's 503s while the server is away (it keeps declaring its tables every tick).
          await until('requests while the server is down', () => px.requests.length >= down + 3, options.eventTimeoutMs);
          await sv.start(serverReady);
        } else if (disruption === 'cloud-restart' && options.restartCloud) {
          const crashesBefore = sv.crashes;
          await options.restartCloud();
          const after = px.requests.length;
          // The server must carry on (answering 503 while its database is away), and the agent with it.
          await wait('the server to answer uploads again after its database restarted', () =>
            px.requests.slice(after).some((r) => r.clientStatus !== null && r.clientStatus < 300 && r.route === 'upload'),
          );
          if (sv.crashes > crashesBefore) violations.push(`the server died when its PostgreSQL restarted (cycle ${cycle + 1})`);
        } else {
          const crashesBefore = ag.crashes;
          const agentStartsBefore = ag.starts;
          await cl.restart();
          const after = px.requests.length;
          // The agent must carry on, without a restart, and get answers again.
          await wait('the agent to reach the server again after the local restart', () =>
            px.requests.slice(after).some((r) => r.clientStatus !== null && r.clientStatus < 300 && r.route === 'upload'),
          );
          if (ag.crashes > crashesBefore || ag.starts > agentStartsBefore)
            violations.push(`the agent died when its local PostgreSQL restarted (cycle ${cycle + 1}); it had to be started again`);
        }
      }

      // --- phase 3: scripted faults on a quiet link (the writer paused, the agent running) ------
      await wr.stop();
      px.setMix(null);
      agentWanted = true;
      // An upload cut mid-body: the server must drop it whole and free its connection (no COPY
      // left waiting for the rest of a body that will never come); the agent sends it again.
      const cut = px.once((r) => r.route === 'upload' && r.table === 'public.pairs' && r.bodyRows > 0, 'reset-mid-body');
      await wr.updatePair(1 + Math.floor(random() * options.pairs));
      await within(cut, 'an upload of pairs to cut mid-body', wait);
      // An upload held by the proxy (the agent sees a reset and sends it again), replayed once
      // newer versions of all its rows are on the server: a late packet must not overwrite them.
      const held = px.once((r) => r.route === 'upload' && r.table === 'public.items' && r.bodyRows > 0, 'capture');
      for (let i = 0; i < 3; i++) await wr.updateOne(1 + Math.floor(random() * options.items));
      const captured = await within(held, 'an upload of items to hold', wait);
      await wr.touchAll('items');
      const localRowCount = await withClient(localUrl, async (c) => (await c.query<{ n: string }>(`select count(*)::text as n from items`)).rows[0]?.n);
      // Counted on the touched rows only: rows the server still holds after a local delete (found
      // later by a count check) do not matter here.
      await wait('every row of items touched on the server', () =>
        withClient(options.cloudUrl, async (c) => {
          const { rows } = await c.query<{ n: string }>(
            `select count(*)::text as n from public.items where tidemark_database_id = $1::uuid and note = 'touched'`,
            [creds.databaseId],
          );
          return rows[0]?.n === localRowCount;
        }),
      );
      disruptions.replay++;
      const replayed = await px.replay(captured);
      say(`cycle ${cycle + 1}: held upload of ${captured.request.bodyRows} rows replayed after newer versions, the server answered ${replayed}`);
      // A 502/503 after the server committed a one-row upload (the last rows of an upload): the row
      // is on the server, and must not sit in quarantine (nor block convergence) for it. Last, so
      // that nothing changes the row afterwards (a local change would release it by itself).
      const failing = px.once((r) => r.route === 'upload' && r.table === 'public.items' && r.bodyRows > 0, 'status-after');
      await wr.updateOne(1 + Math.floor(random() * options.items));
      const failed = await within(failing, 'an upload of items to answer 5xx after commit', wait);
      const afterFailure = log.lines.length;
      await wait('the agent’s run with the 5xx to end', () => log.lines.slice(afterFailure).some((l) => l.process.startsWith('agent') && tickDone(l) !== null));
      say(`cycle ${cycle + 1}: a ${failed.bodyRows}-row upload committed, the agent got ${failed.clientStatus}`);
      px.clearRules();
    }

    // --- the end: sync --once until converged, then the checks -----------------------------
    say('the end: sync --once until converged, then the checks');
    agentWanted = false;
    await ag.kill();
    await wr.close();
    px.setMix(null);
    let last = '';
    for (syncAttempts = 1; syncAttempts <= options.maxSyncAttempts; syncAttempts++) {
      const r = await syncOnce(`sync-final-${syncAttempts}`);
      last = `${r.stdout.trim()} ${r.stderr.trim()}`.trim();
      if (r.code === 0) break;
    }
    if (syncAttempts > options.maxSyncAttempts) {
      syncAttempts = options.maxSyncAttempts;
      violations.push(`sync --once did not converge in ${options.maxSyncAttempts} attempts; the last said: ${last.replace(/\s+/g, ' ')}`);
    }
    // Every client is gone: a server session still busy (a COPY waiting for the rest of a body cut
    // by a reset, a transaction left open) is a leak that ends with a hung server.
    const busy = await withClient(options.cloudUrl, async (c) => {
      const { rows } = await c.query<{ state: string; query: string }>(
        `select state, left(query, 120) as query from pg_stat_activity
          where datname = current_database() and application_name = 'tidemark-server' and state is distinct from 'idle'`,
      );
      return rows;
    });
    if (busy.length)
      violations.push(`the server left ${busy.length} database session(s) busy after every client had gone, e.g. ${busy[0]?.state}: ${busy[0]?.query}`);
    // The server's O(1) figures, as the agent reads them: GET of each table's summary (the agent's id keeps its lease).
    const agentId = await withClient(
      localUrl,
      async (c) => (await c.query<{ id: string }>(`select agent_id::text as id from tidemark.agent`)).rows[0]?.id ?? '',
    );
    const summaries = new Map<string, number>();
    for (const t of TABLES) {
      const res = await fetch(`${serverUrl}/v1/customers/${creds.clientId}/databases/${creds.databaseId}/tables/public.${t.name}`, {
        headers: { authorization: `Bearer ${creds.apiKey}`, 'x-tidemark-agent-id': agentId },
      });
      if (res.ok) summaries.set(`public.${t.name}`, ((await res.json()) as { rowCount: number }).rowCount);
      else violations.push(`public.${t.name}: the server's summary could not be read (${res.status})`);
    }

    for (const t of TABLES) {
      const localRows = await withClient(localUrl, async (c) => {
        const { rows } = await c.query<Row>(`select ${t.key} as key, to_jsonb(x)::text as text from ${t.name} x`);
        return new Map(rows.map((r) => [r.key, r.text]));
      });
      const remoteRows = await withClient(options.cloudUrl, async (c) => {
        const { rows } = await c.query<Row>(
          `select ${t.key} as key, (to_jsonb(x) - 'tidemark_client_id' - 'tidemark_database_id')::text as text from public.${t.name} x where tidemark_database_id = $1::uuid`,
          [creds.databaseId],
        );
        return new Map(rows.map((r) => [r.key, r.text]));
      });
      let lost = 0;
      let stale = 0;
      let extra = 0;
      for (const [k, v] of localRows) {
        const remote = remoteRows.get(k);
        if (remote === undefined) lost++;
        else if (remote !== v) stale++;
      }
      for (const k of remoteRows.keys()) if (!localRows.has(k)) extra++;
      const quarantine = await withClient(localUrl, async (c) => {
        const { rows } = await c.query<{ key: string }>(
          `select array_to_string(key_text, '/') as key from tidemark.quarantine where schema_name = 'public' and table_name = $1::text`,
          [t.name],
        );
        return rows.map((r) => r.key);
      });
      const quarantinedButEqual = quarantine.filter((k) => localRows.has(k) && localRows.get(k) === remoteRows.get(k)).length;
      const summaryRowCount = summaries.get(`public.${t.name}`) ?? null;
      tables.push({
        table: `public.${t.name}`,
        localRows: localRows.size,
        remoteRows: remoteRows.size,
        summaryRowCount,
        lost,
        extra,
        stale,
        quarantined: quarantine.length,
        quarantinedButEqual,
      });
      if (lost || extra || stale)
        violations.push(`public.${t.name}: rows differ: ${lost} lost, ${extra} extra, ${stale} stale (of ${localRows.size} local rows)`);
      if (summaryRowCount !== remoteRows.size)
        violations.push(`public.${t.name}: the server's summary says ${summaryRowCount ?? 'nothing'} rows, count(*) is ${remoteRows.size}`);
      if (quarantinedButEqual) violations.push(`public.${t.name}: ${quarantinedButEqual} quarantined row(s) equal on both sides`);
    }
  } catch (e) {
    violations.push(`the scenario could not finish: ${(e as Error).message}`);
  } finally {
    await agent?.kill().catch(() => {});
    if (server?.running && !(await server.stop(15_000))) violations.push('the server did not stop within 15 s of SIGTERM (it was killed)');
    await writer?.close().catch(() => {});
    await proxy?.close().catch(() => {});
    await owned.cluster?.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  checkLogs(log, violations);
  if (options.logFile) writeFileSync(options.logFile, log.lines.map((l) => `${l.process} ${l.stream}: ${l.text}`).join('\n'));
  const errorLines: Record<string, number> = {};
  for (const l of log.lines) {
    const p = parseLogLine(l.text);
    if (p && p.level >= 50) {
      const kind = l.process.replace(/[#-].*$/, '');
      errorLines[kind] = (errorLines[kind] ?? 0) + 1;
    }
  }
  return {
    seed: options.seed,
    durationSeconds: (performance.now() - started) / 1000,
    requests: proxy?.requests.length ?? 0,
    faults: proxy ? { ...proxy.faults } : ({} as Record<FaultKind, number>),
    disruptions,
    writes: writer ? { ...writer.committed } : ({} as Record<WriteKind, number>),
    writesInterrupted: writer?.interrupted ?? 0,
    firstSync,
    syncAttempts,
    tables,
    errorLines,
    violations,
  };
}

/** No crash in any output, no exit nobody asked for, no client reset logged by the server as an error. */
function checkLogs(log: Log, violations: string[]): void {
  for (const exit of log.unexpectedExits)
    violations.push(`${exit.process} exited by itself (code ${exit.code}, signal ${exit.signal}): ${exit.tail.slice(-3).join(' | ').slice(0, 600)}`);
  const crashes = log.crashLines();
  if (crashes.length)
    violations.push(
      `unhandled errors in process output (${crashes.length} lines), first: ${crashes
        .slice(0, 2)
        .map((l) => `${l.process}: ${l.text.trim()}`)
        .join(' | ')
        .slice(0, 600)}`,
    );
  const resets = log.lines.filter((l) => {
    if (!l.process.startsWith('server')) return false;
    const p = parseLogLine(l.text);
    return p !== null && p.level >= 50 && /aborted|ECONNRESET|premature close/i.test(l.text);
  });
  if (resets.length)
    violations.push(`the server logged ${resets.length} client reset(s) as errors (a client going away is info), e.g. ${resets[0]?.text.slice(0, 300)}`);
}

/** The report as a few lines for humans (the soak's summary, and the test's output). */
export function formatReport(r: ScenarioReport): string {
  const kv = (o: Record<string, number>): string =>
    Object.entries(o)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  const lines = [
    `seed ${r.seed} (replay with TIDEMARK_FAULT_SEED=${r.seed}); ${r.durationSeconds.toFixed(1)} s; ${r.requests} requests through the proxy`,
    `faults: ${kv(r.faults)}`,
    `disruptions: ${kv(r.disruptions)}`,
    `writes committed: ${kv(r.writes)}; cut by restarts ${r.writesInterrupted}`,
    r.firstSync
      ? `first sync: ${r.firstSync.appliedBeforeKill} of ${r.firstSync.rows} rows applied before the kill, ${r.firstSync.sentAfterRestart} sent after the restart`
      : 'first sync: not reached',
    `sync --once attempts to converge: ${r.syncAttempts}; error-level log lines: ${kv(r.errorLines) || 'none'}`,
    ...r.tables.map(
      (t) =>
        `${t.table}: local ${t.localRows}, remote ${t.remoteRows}, summary ${t.summaryRowCount ?? '?'}; lost ${t.lost}, extra ${t.extra}, stale ${t.stale}; quarantined ${t.quarantined} (${t.quarantinedButEqual} equal on both sides)`,
    ),
    r.violations.length ? `FAILED (${r.violations.length}):\n${r.violations.map((v) => `  - ${v}`).join('\n')}` : 'all checks passed',
  ];
  return lines.join('\n');
}
