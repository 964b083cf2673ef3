/**
 * The agent: runs every tracked table on a schedule, tables in parallel under a limit, runs never
 * overlapping. A tick never throws; one table's failure never stops the others.
 */
import cron, { type ScheduledTask } from 'node-cron';
import pLimit from 'p-limit';
import type pg from 'pg';

import type { AgentConfig } from '../shared/config/agent-config.js';
import { ConfigError, ErrorCode, TidemarkError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { formatTableName, parseTableName, type TableName, type TableSummary } from '../shared/protocol.js';
import type { AgentMetrics } from './agent-metrics.js';
import { readAgentId } from './local/agent-identity.js';
import { AgentLock, type AgentLockOptions } from './local/agent-lock.js';
import { type LocalStores, pgLocalStores } from './local/local-stores.js';
import { installStateSchema } from './local/state-schema.js';
import type { Remote, RemoteFactory } from './remote.js';
import { type RunBudgetFactory, timeBudget } from './run-budget.js';
import type { ProgressListener } from './run-progress.js';
import { RunReporter } from './run-report.js';
import { type RunOptions, type TableRunResult, TableSync } from './table-sync.js';
import { tickOffsetMs } from './tick-spread.js';

export interface TableStatus {
  table: string;
  local: { rowCount: number; maxVersion: string | null; horizon: string } | null;
  remote: TableSummary | null;
  quarantined: { key: string[]; version: string; error: string; attempts: number }[];
  error: string | null;
}

/** What tests (and embedders) may inject into an agent. */
export interface AgentOptions {
  /** Clock and randomness of the lock's reconnect backoff. */
  lock?: AgentLockOptions;
  /** The budget of each table run; by default `runBudgetSeconds` of wall-clock time. */
  budget?: RunBudgetFactory;
  /** The clock (epoch ms) quarantine backoffs run on. */
  now?: () => number;
  /** Live upload progress of each table run (`sync --once` on a terminal). */
  progress?: ProgressListener;
}

export interface TickResult {
  startedAt: Date;
  tables: TableRunResult[];
  /** True when every table converged. */
  converged: boolean;
}

export class Agent {
  private readonly sync: TableSync;
  private running: Promise<TickResult | null> | null = null;
  private task: ScheduledTask | null = null;
  private spreadTimer: NodeJS.Timeout | undefined;
  private firstTick = true;
  /** Tells the server what each tick did (run-report.ts). */
  private readonly reporter: RunReporter;

  private constructor(
    private readonly config: Readonly<AgentConfig>,
    readonly local: LocalStores,
    readonly remote: Remote,
    /** The single-agent lock: the scheduled ticks run only while it is held (CLI commands take it themselves). */
    readonly lock: AgentLock,
    options: { budget: RunBudgetFactory; now?: (() => number) | undefined; reporter: RunReporter; progress?: ProgressListener | undefined },
    private readonly metrics: AgentMetrics,
    private readonly log: Logger,
  ) {
    this.reporter = options.reporter;
    this.sync = new TableSync({
      local,
      budget: options.budget,
      now: options.now ?? Date.now,
      progress: options.progress,
      remote,
      metrics,
      log,
      settings: {
        tuner: {
          targetSeconds: config.batch.targetSeconds,
          minRows: config.batch.minRows,
          maxRows: config.batch.maxRows,
          minBytes: config.batch.minBytes,
          maxBytes: config.batch.maxBytes,
          initialBytes: config.batch.initialBytes,
        },
        batchTimeoutSeconds: config.batch.timeoutSeconds,
        firstSyncInFlight: config.batch.firstSyncInFlight,
        runBudgetSeconds: config.runBudgetSeconds,
        verificationPeriodHours: config.verification.periodHours,
        intervalSeconds: intervalSeconds(config.schedule),
        quarantine: config.quarantine,
      },
    });
  }

  /**
   * Installs the local state schema, reads the agent's persistent id and builds its remote with
   * `makeRemote` (the composition root chooses the transport, e.g. `httpRemoteFactory(config)`).
   */
  static async create(
    config: Readonly<AgentConfig>,
    pool: pg.Pool,
    metrics: AgentMetrics,
    log: Logger,
    makeRemote: RemoteFactory,
    options: AgentOptions = {},
  ): Promise<Agent> {
    if (!cron.validate(config.schedule)) throw new ConfigError(`invalid configuration: schedule: ${JSON.stringify(config.schedule)} is not a cron expression`);
    await installStateSchema(pool);
    const agentId = await readAgentId(pool);
    const local = pgLocalStores(pool);
    const remote = makeRemote(agentId);
    const agentLog = log.child({ agentId });
    const budget = options.budget ?? timeBudget(config.runBudgetSeconds);
    const reporter = new RunReporter({ pool, local, metrics, log: agentLog, now: options.now ?? Date.now });
    return new Agent(
      config,
      local,
      remote,
      new AgentLock(pool, agentLog, options.lock),
      { budget, now: options.now, reporter, progress: options.progress },
      metrics,
      agentLog,
    );
  }

  /** The configured tables, or every tracked one. */
  async tables(): Promise<TableName[]> {
    if (this.config.tables?.length) return this.config.tables.map((t) => parseTableName(t));
    return this.local.catalog.listTracked();
  }

  /** One run over every table. Never throws. */
  async tick(options: Partial<RunOptions> & { tables?: TableName[] } = {}): Promise<TickResult> {
    const startedAt = new Date();
    let tables: TableName[];
    try {
      tables = options.tables ?? (await this.tables());
    } catch (e) {
      const code = e instanceof TidemarkError ? e.code : ErrorCode.DB_UNAVAILABLE;
      this.log.error({ code, error: (e as Error).message }, 'cannot list tables');
      return { startedAt, tables: [], converged: false };
    }
    if (tables.length === 0) this.log.warn({}, 'no tracked tables; run tidemark track TABLE');
    const checkCount = options.checkCount ?? this.firstTick;
    this.firstTick = false;
    const limit = pLimit(this.config.concurrency);
    const results = await Promise.all(
      tables.map((t) =>
        limit(() =>
          this.sync.run(t, {
            checkCount,
            ...(options.verifyAll !== undefined ? { verifyAll: options.verifyAll } : {}),
            ...(options.dryRun !== undefined ? { dryRun: options.dryRun } : {}),
          }),
        ),
      ),
    );
    const converged = results.length > 0 && results.every((r) => r.converged);
    this.log.info({ tables: results.length, converged, durationMs: Date.now() - startedAt.getTime() }, 'tick done');
    if (!options.dryRun) await this.reporter.afterTick(this.remote, { startedAt, tables: results, complete: options.tables === undefined });
    return { startedAt, tables: results, converged };
  }

  /** `tidemark verify`: whole-table comparison of each table, repaired unless dryRun. */
  async verify(options: { dryRun: boolean; tables?: TableName[] }): Promise<TableRunResult[]> {
    const tables = options.tables ?? (await this.tables());
    const limit = pLimit(this.config.concurrency);
    return Promise.all(tables.map((t) => limit(() => this.sync.verify(t, options.dryRun))));
  }

  /** `tidemark status`: local and remote figures per table, with quarantined rows. */
  async status(): Promise<TableStatus[]> {
    const tables = await this.tables();
    return Promise.all(
      tables.map(async (name): Promise<TableStatus> => {
        const label = formatTableName(name);
        const out: TableStatus = { table: label, local: null, remote: null, quarantined: [], error: null };
        try {
          const table = await this.local.catalog.describe(name);
          const snap = await this.local.openSnapshot(table);
          try {
            out.local = { rowCount: await snap.count(), maxVersion: (await snap.stats()).maxVersion, horizon: snap.snapshot.xmin };
          } finally {
            await snap.close();
          }
          out.quarantined = (await this.local.quarantine.list(name, false)).map((q) => ({
            key: q.key,
            version: q.version,
            error: q.error,
            attempts: q.attempts,
          }));
          out.remote = await this.remote.summary(name).catch((e: unknown) => {
            // Not declared on the server yet (never synced): behind, not an error.
            if (e instanceof TidemarkError && e.code === ErrorCode.REPLICA_TABLE_UNKNOWN) return null;
            throw e;
          });
          // Unless the server refused its declaration: only the last run knows why.
          if (out.remote === null) {
            const { lastError } = await this.local.state.read(name);
            if (lastError) out.error = `the server has not accepted this table; the last run failed: ${lastError}`;
          }
        } catch (e) {
          out.error = e instanceof TidemarkError ? `${e.message} [${e.code}]` : String(e);
        }
        return out;
      }),
    );
  }

  /**
   * Runs a tick unless one is in flight (then the tick is skipped and counted), and only while this
   * agent holds the single-agent lock: a lock lost with its connection (the local database
   * restarted) is re-taken first; if another agent took it meanwhile, or the database is still
   * away, the tick is skipped.
   */
  async tickOnce(): Promise<TickResult | null> {
    if (this.running) {
      this.metrics.runsSkipped.inc();
      this.log.warn({}, 'previous run still going; tick skipped');
      return null;
    }
    this.running = this.lockedTick();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  private async lockedTick(): Promise<TickResult | null> {
    const lock = await this.lock.ensure();
    if (lock !== 'held') {
      this.metrics.runsSkipped.inc();
      this.log.warn(
        { lock },
        lock === 'busy' ? 'another agent holds the lock of this local database; tick skipped' : 'local database unavailable; tick skipped',
      );
      return null;
    }
    return this.tick();
  }

  /** Starts the schedule, with a first run right away; scheduled runs wait their database's offset (tick-spread.ts). */
  start(): void {
    const offsetMs = tickOffsetMs(this.config.databaseId, this.config.schedule, intervalSeconds(this.config.schedule));
    this.task = cron.schedule(this.config.schedule, () => {
      this.spreadTimer = setTimeout(() => void this.tickOnce(), offsetMs);
    });
    void this.tickOnce();
    this.log.info({ schedule: this.config.schedule, tables: this.config.tables ?? 'all tracked' }, 'agent started');
  }

  /** Stops the schedule, waits for the run in flight, gives the lock up, and closes the remote. */
  async stop(): Promise<void> {
    if (this.spreadTimer) clearTimeout(this.spreadTimer);
    if (this.task) await this.task.destroy();
    this.task = null;
    if (this.running) await this.running;
    await this.lock.release();
    this.remote.close();
  }
}

/** Seconds between two runs of a cron schedule (for sizing verification slices). */
export function intervalSeconds(schedule: string): number {
  try {
    const task = cron.createTask(schedule, () => {});
    const [a, b] = task.getNextRuns(2);
    void task.destroy();
    if (a && b) return Math.max(1, (b.getTime() - a.getTime()) / 1000);
  } catch {
    // invalid schedules are reported by Agent.create
  }
  return 60;
}
