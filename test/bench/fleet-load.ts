/**
 * The fleet benchmark's load generator: simulated tenants that drive a tidemark server over HTTP
 * with the requests a real agent makes for a table run (replayed, not run through TableSync: one
 * process cannot host thousands of local databases). Which requests a run makes was taken from the
 * agent (table-run.ts) and is checked by the cost phase of fleet-bench.ts against a real agent:
 *  - an idle run (this protocol): PUT declare carrying `idleSettle`;
 *  - an idle run as agents made it before (the old protocol): PUT declare, then POST with an empty
 *    body and the settle in the query;
 *  - a run that uploads: PUT declare, POST of the changed rows (COPY text) carrying the settle (its
 *    changes fit in one batch: the agent sends the settle with its last batch).
 * Each simulated table keeps a horizon that moves like a local database's transaction ids.
 */
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';

import { type RegisterResult, ROUTES, type TableDeclaration, type TableName, type TableSummary, tablePath } from '../../src/shared/protocol.js';

export const FLEET_DECLARATION: TableDeclaration = {
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'id', type: 'integer', notNull: true },
    { name: 'name', type: 'text', notNull: false },
  ],
  keyColumns: ['id'],
};

export interface HttpAnswer {
  status: number;
  text: string;
}

/** A keep-alive HTTP client to one server. */
export class FleetHttp {
  readonly agent: Agent;
  requests = 0;
  errors = new Map<number, number>();

  constructor(
    private readonly baseUrl: string,
    sockets: number,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: sockets });
  }

  send(method: string, path: string, body: string | Buffer | undefined, headers: Record<string, string>): Promise<HttpAnswer> {
    this.requests++;
    const url = new URL(path, this.baseUrl);
    return new Promise((resolve, reject) => {
      const req = request(
        url,
        { method, agent: this.agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 400) this.errors.set(status, (this.errors.get(status) ?? 0) + 1);
            resolve({ status, text: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** One simulated table of one tenant, with the horizon its local database would have. */
export interface FleetTable {
  tenant: RegisterResult & { agentId: string };
  name: TableName;
  /** The server's state as the last answer told it. */
  known: Pick<TableSummary, 'settledVersion' | 'settledXmax' | 'settledXip' | 'maxVersion'>;
  busy: boolean;
}

/** The local databases' transaction ids: one counter for the whole fleet is enough. */
let xid = 1000n;
function nextXid(): string {
  xid += 3n;
  return xid.toString();
}

function headers(t: FleetTable, extra: Record<string, string> = {}): Record<string, string> {
  return { authorization: `Bearer ${t.tenant.apiKey}`, 'x-tidemark-agent-id': t.tenant.agentId, ...extra };
}

function path(t: FleetTable, query = ''): string {
  return `${tablePath(t.tenant.clientId, t.tenant.databaseId, t.name)}${query}`;
}

function remember(t: FleetTable, answer: HttpAnswer): void {
  if (answer.status !== 200) throw new Error(`${answer.status} ${answer.text.slice(0, 200)}`);
  const s = JSON.parse(answer.text) as TableSummary & { summary?: TableSummary };
  const summary = s.summary ?? s;
  t.known = { settledVersion: summary.settledVersion, settledXmax: summary.settledXmax, settledXip: summary.settledXip, maxVersion: summary.maxVersion };
}

const JSON_TYPE = { 'content-type': 'application/json' };

function declare(http: FleetHttp, t: FleetTable, idle?: unknown): Promise<HttpAnswer> {
  return http.send('PUT', path(t), JSON.stringify(idle ? { ...FLEET_DECLARATION, idleSettle: idle } : FLEET_DECLARATION), headers(t, JSON_TYPE));
}

function settle(http: FleetHttp, t: FleetTable, version: string): Promise<HttpAnswer> {
  const q = new URLSearchParams({ settledVersion: version, settledXmax: version });
  return http.send('POST', path(t, `?${q.toString()}`), '', headers(t, { 'content-type': 'text/tab-separated-values' }));
}

/** An idle run with this protocol: one request. Returns whether the server settled it on the declaration. */
export async function idleRun(http: FleetHttp, t: FleetTable): Promise<boolean> {
  const v = nextXid();
  const answer = await declare(http, t, {
    expected: { settledVersion: t.known.settledVersion, settledXmax: t.known.settledXmax, settledXip: t.known.settledXip },
    settle: { settledVersion: v, settledXmax: v, settledXip: [] },
    maxVersion: t.known.maxVersion,
  });
  remember(t, answer);
  const settled = (JSON.parse(answer.text) as { idleSettled?: boolean }).idleSettled === true;
  // A refused idle settle: the agent settles the old way.
  if (!settled) remember(t, await settle(http, t, v));
  return settled;
}

/** An idle run as agents made it before this protocol: declare, then an empty upload that settles. */
export async function legacyIdleRun(http: FleetHttp, t: FleetTable): Promise<void> {
  remember(t, await declare(http, t));
  remember(t, await settle(http, t, nextXid()));
}

/** A run that uploads `rows` changed rows: declare, the rows, the settle. */
export async function uploadRun(http: FleetHttp, t: FleetTable, rows: number, keySpace: number): Promise<void> {
  remember(t, await declare(http, t));
  const v = nextXid();
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) lines.push(`${v}\t${1 + Math.floor(Math.random() * keySpace)}\tname ${v} ${i}\n`);
  // Keys drawn twice in one batch would be a duplicate key in one upsert: keep the first.
  const seen = new Set<string>();
  const body = lines.filter((l) => {
    const k = l.split('\t')[1] as string;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  // The rows' versions are below the settle's horizon (the run's snapshot came after their commit).
  const horizon = nextXid();
  const q = new URLSearchParams({ settledVersion: horizon, settledXmax: horizon });
  remember(t, await http.send('POST', path(t, `?${q.toString()}`), body.join(''), headers(t, { 'content-type': 'text/tab-separated-values' })));
}

/** Registers `tenants` databases with `tables` tables each, each table declared with `rows` rows and settled. */
export async function setUpFleet(
  http: FleetHttp,
  adminKey: string,
  options: { tenants: number; tables: number; rows: number; concurrency: number },
): Promise<FleetTable[]> {
  const fleet: FleetTable[] = [];
  const register = async (i: number): Promise<void> => {
    const clientId = `fleet${Math.floor(i / 10)}`;
    const answer = await http.send('POST', ROUTES.adminDatabases.replace(':clientId', clientId), JSON.stringify({ name: `site ${i}` }), {
      authorization: `Bearer ${adminKey}`,
      ...JSON_TYPE,
    });
    if (answer.status !== 200 && answer.status !== 201) throw new Error(`register: ${answer.status} ${answer.text}`);
    const tenant = { ...(JSON.parse(answer.text) as RegisterResult), agentId: randomUUID() };
    for (let k = 0; k < options.tables; k++) {
      const t: FleetTable = {
        tenant,
        name: { schema: 'public', name: `fleet_t${k}` },
        known: { settledVersion: '0', settledXmax: null, settledXip: [], maxVersion: null },
        busy: false,
      };
      await uploadRun(http, t, options.rows, options.rows);
      fleet.push(t);
    }
  };
  // The first tenant creates the replica tables, alone.
  await register(0);
  await pool(options.tenants - 1, options.concurrency, (i) => register(i + 1));
  return fleet;
}

/** Runs `task(0..n-1)` with at most `concurrency` at once. */
export async function pool(n: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
}

export interface LoadFigures {
  runs: number;
  seconds: number;
  runsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  errors: string;
  failedRuns: number;
  lastFailure: string;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Runs table runs over the fleet for `seconds` with `concurrency` runs at once (each table at most
 * one run at a time, taken round-robin), and measures runs/s and run latency.
 */
export async function drive(
  clients: FleetHttp | FleetHttp[],
  fleet: FleetTable[],
  options: { seconds: number; concurrency: number },
  run: (t: FleetTable, i: number) => Promise<void>,
): Promise<LoadFigures> {
  const latencies: number[] = [];
  const all = Array.isArray(clients) ? clients : [clients];
  const requests = (): number => all.reduce((n, h) => n + h.requests, 0);
  const requestsBefore = requests();
  for (const h of all) h.errors.clear();
  let cursor = 0;
  let n = 0;
  let failed = 0;
  let lastFailure = '';
  const t0 = performance.now();
  const deadline = t0 + options.seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      let t: FleetTable | undefined;
      for (let tries = 0; tries < fleet.length && !t; tries++) {
        const c = fleet[cursor++ % fleet.length] as FleetTable;
        if (!c.busy) t = c;
      }
      if (!t) throw new Error('more workers than tables');
      t.busy = true;
      const started = performance.now();
      try {
        await run(t, n++);
        latencies.push(performance.now() - started);
      } catch (e) {
        failed++;
        lastFailure = (e as Error).message;
      } finally {
        t.busy = false;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    runs: latencies.length,
    seconds,
    runsPerSecond: latencies.length / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    requests: requests() - requestsBefore,
    errors: all.flatMap((h) => [...h.errors.entries()].map(([s, k]) => `${k}x${s}`)).join(' ') || 'none',
    failedRuns: failed,
    lastFailure,
  };
}
