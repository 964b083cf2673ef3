import type { Command } from 'commander';

import { Agent, type TickResult } from '../agent/agent.js';
import { createAgentMetrics } from '../agent/agent-metrics.js';
import { parseListen } from '../shared/config/load-config.js';
import { ErrorCode, TidemarkError } from '../shared/errors.js';
import { serveMetrics } from '../shared/metrics/metrics-endpoint.js';
import { type AgentFlags, addAgentOptions, agentConfigFrom, EXIT_FAILURE, ExitError, localPool, logger, remoteFor, untilSignal } from './common.js';
import { ProgressDisplay } from './progress-display.js';

function printTick(result: TickResult, json: boolean): void {
  if (json) {
    // Throughput of each table's uploads: rows and bytes per second of its run.
    const tables = result.tables.map((t) => ({
      ...t,
      rowsPerSecond: t.durationSeconds > 0 ? t.rowsUploaded / t.durationSeconds : 0,
      bytesPerSecond: t.durationSeconds > 0 ? t.bytesUploaded / t.durationSeconds : 0,
    }));
    process.stdout.write(`${JSON.stringify({ ...result, tables }, null, 2)}\n`);
    return;
  }
  for (const t of result.tables) {
    const state = t.converged ? 'converged' : `NOT converged${t.error ? `: ${t.error.message} [${t.error.code}]` : ''}`;
    process.stdout.write(
      `${t.table}: ${state}; uploaded ${t.rowsUploaded}, deleted ${t.rowsDeleted}, quarantined ${t.quarantined}; rows local ${t.localCount ?? '?'} remote ${t.remoteCount}; ${t.durationSeconds.toFixed(2)} s\n`,
    );
  }
}

/** Takes the single-agent lock at start, or fails: another agent runs, or the local database is away. */
async function takeLock(agent: Agent): Promise<void> {
  const state = await agent.lock.ensure();
  if (state === 'busy') throw new TidemarkError(ErrorCode.LEASE_HELD, 'another tidemark agent is running against this local database');
  if (state === 'unavailable') throw new TidemarkError(ErrorCode.DB_UNAVAILABLE, 'the local database cannot be reached to take the agent lock');
}

export function agentCommands(program: Command): void {
  addAgentOptions(
    program
      .command('sync')
      .description('run one full sync of every table; exit 0 when every table converged')
      .requiredOption('--once', 'run once and exit (the scheduled form is `tidemark agent`)')
      .option('--json', 'print the run as JSON'),
  ).action(async (flags: AgentFlags & { once: boolean; json?: boolean }) => {
    const config = agentConfigFrom(flags, process.env);
    // The printed summary carries each table's outcome; logs (stderr) only for errors unless asked.
    const log = logger(flags.logLevel ?? 'error', 'error', 2);
    const pool = localPool(config.databaseUrl, log, 'tidemark-agent', config.concurrency);
    const metrics = createAgentMetrics();
    // On a terminal, a live line per table while it uploads; on a pipe, only the summary.
    const display = process.stdout.isTTY && !flags.json ? new ProgressDisplay(process.stdout) : undefined;
    try {
      const agent = await Agent.create(config, pool, metrics, log, remoteFor(config, flags), display ? { progress: display.update } : {});
      try {
        await takeLock(agent);
        const result = await agent.tick({ checkCount: true });
        display?.finish();
        printTick(result, flags.json === true);
        if (result.tables.length === 0) throw new ExitError(EXIT_FAILURE, 'no tracked tables; run tidemark track TABLE first');
        if (!result.converged) throw new ExitError(EXIT_FAILURE, `${result.tables.filter((t) => !t.converged).length} table(s) did not converge`);
      } finally {
        await agent.stop();
      }
    } finally {
      await pool.end();
    }
  });

  addAgentOptions(
    program
      .command('agent')
      .description('run the agent on a schedule (every minute by default) until Ctrl-C')
      .option('--schedule <cron>', "cron expression (default '* * * * *'; env TIDEMARK_SCHEDULE)")
      .option('--metrics-listen <host:port>', 'serve Prometheus /metrics here (default 127.0.0.1:9465; env TIDEMARK_METRICS_LISTEN)'),
  ).action(runAgent);
}

/** `tidemark agent`: the schedule, /metrics, until SIGINT or SIGTERM. */
export async function runAgent(flags: AgentFlags): Promise<void> {
  const config = agentConfigFrom(flags, process.env);
  const log = logger(config.logLevel, 'info', 1);
  const pool = localPool(config.databaseUrl, log, 'tidemark-agent', config.concurrency);
  try {
    const metrics = createAgentMetrics(config.tables ?? []);
    const agent = await Agent.create(config, pool, metrics, log, remoteFor(config, flags));
    try {
      await takeLock(agent);
      const listen = config.metricsListen ? parseListen(config.metricsListen) : null;
      const metricsServer = listen ? await serveMetrics(metrics.registry, listen.host, listen.port) : null;
      if (metricsServer) log.info({ url: metricsServer.url }, 'metrics listening');
      agent.start();
      const signal = await untilSignal();
      log.info({ signal }, 'stopping after the run in flight');
      await metricsServer?.close();
    } finally {
      await agent.stop();
    }
  } finally {
    await pool.end();
  }
}
