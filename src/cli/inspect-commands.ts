import type { Command } from 'commander';

import { Agent } from '../agent/agent.js';
import { createAgentMetrics } from '../agent/agent-metrics.js';
import type { TableRunResult } from '../agent/table-sync.js';
import { parseTableName, type TableSchemaState } from '../shared/protocol.js';
import { adminRequest } from './admin-client.js';
import { bundleStatusLines, fetchBundleStatus } from './bundle-status.js';
import {
  type AgentFlags,
  addAgentOptions,
  adminConfigFrom,
  agentConfigFrom,
  EXIT_FAILURE,
  ExitError,
  localPool,
  logger,
  remoteFor,
  splitList,
} from './common.js';
import { formatTable } from './fleet-command.js';
import { statusProblem, statusState } from './status-state.js';

async function withAgent<T>(flags: AgentFlags, fn: (agent: Agent) => Promise<T>): Promise<T> {
  const config = agentConfigFrom(flags, process.env);
  const log = logger(flags.logLevel, 'warn', 2);
  const pool = localPool(config.databaseUrl, log, 'tidemark-cli', config.concurrency);
  try {
    const agent = await Agent.create(config, pool, createAgentMetrics(), log, remoteFor(config, flags));
    try {
      return await fn(agent);
    } finally {
      await agent.stop();
    }
  } finally {
    await pool.end();
  }
}

function printDiff(r: TableRunResult, dryRun: boolean): void {
  const d = r.diff;
  if (r.error) {
    process.stdout.write(`${r.table}: error: ${r.error.message} [${r.error.code}]\n`);
    return;
  }
  if (!d) return;
  const n = d.missing.length + d.extra.length + d.changed.length;
  process.stdout.write(
    `${r.table}: ${n === 0 ? 'identical' : `${n} rows differ`} (local ${r.localCount} rows, remote ${r.remoteCount}; ${d.mismatchedBuckets}/${d.bucketsCompared} buckets differ, ${d.rowsCompared} rows compared, ${d.roundTrips} round trips, ${r.durationSeconds.toFixed(2)} s)${n && !dryRun ? ', repaired' : ''}\n`,
  );
  const show = (sign: string, keys: string[][]): void => {
    for (const k of keys.slice(0, 50)) process.stdout.write(`${sign} ${JSON.stringify(k)}\n`);
    if (keys.length > 50) process.stdout.write(`${sign} ... ${keys.length - 50} more\n`);
  };
  show('+', d.missing); // present locally, missing remotely
  show(
    '-',
    d.extra.map((e) => e.key),
  ); // extra remotely
  show('~', d.changed); // same key, different version or content
}

/** A table's schema state on the server: in sync, changed and applied at T, or blocked (the reason is printed below the table). */
function schemaCell(schema: TableSchemaState | undefined): string {
  if (!schema) return '-';
  if (schema.state === 'blocked') return 'blocked';
  return schema.changedAt ? `changed, applied ${schema.appliedAt}` : 'in sync';
}

export function inspectCommands(program: Command): void {
  addAgentOptions(
    program.command('status').description('per table: local vs remote row count and versions, quarantined rows, resync state').option('--json', 'print JSON'),
  ).action(async (flags: AgentFlags & { json?: boolean }) => {
    const rows = await withAgent(flags, (agent) => agent.status());
    // Exit 1 when a table is not in sync (a server down or refusing the key included), after printing.
    const problem = statusProblem(rows);
    // An offline database's last bundle (bundle-status.ts); not in --json, whose answer stays the array of tables.
    const offline = flags.json ? [] : bundleStatusLines(await fetchBundleStatus(agentConfigFrom(flags, process.env)));
    if (flags.json) {
      process.stdout.write(
        `${JSON.stringify(
          rows.map((r) => ({ ...r, state: statusState(r) })),
          null,
          2,
        )}\n`,
      );
      if (problem) throw new ExitError(EXIT_FAILURE, problem);
      return;
    }
    const cells = [['TABLE', 'LOCAL ROWS', 'REMOTE ROWS', 'LOCAL MAX VERSION', 'REMOTE MAX VERSION', 'SETTLED', 'QUARANTINED', 'RESYNC', 'SCHEMA', 'STATE']];
    for (const r of rows) {
      const resync = r.remote?.resync
        ? `${r.remote.resync.status}${r.remote.resync.status === 'running' ? ` ${(r.remote.resync.progress * 100).toFixed(0)}%` : ''}${r.remote.resync.status === 'done' ? ` ${r.remote.resync.finishedAt} (${r.remote.resync.rowsRepaired} repaired)` : ''}`
        : '-';
      cells.push([
        r.table,
        String(r.local?.rowCount ?? '?'),
        String(r.remote?.rowCount ?? '?'),
        r.local?.maxVersion ?? '-',
        r.remote?.maxVersion ?? '-',
        r.remote?.settledVersion ?? '-',
        String(r.quarantined.length),
        resync,
        schemaCell(r.remote?.schema),
        r.error ? `error: ${r.error}` : statusState(r).replace('_', ' '),
      ]);
    }
    process.stdout.write(`${formatTable(cells)}\n`);
    for (const r of rows) if (r.remote?.schema?.state === 'blocked') process.stdout.write(`schema of ${r.table} blocked: ${r.remote.schema.reason}\n`);
    for (const r of rows)
      for (const q of r.quarantined.slice(0, 20))
        process.stdout.write(`quarantined ${r.table} key ${JSON.stringify(q.key)} version ${q.version} (${q.attempts} attempts): ${q.error}\n`);
    for (const line of offline) process.stdout.write(`${line}\n`);
    if (problem) throw new ExitError(EXIT_FAILURE, problem);
  });

  addAgentOptions(
    program
      .command('verify')
      .description('compare every row now (hash manifests) and print the rows that differ; repairs them unless --dry-run')
      .option('--dry-run', 'report only; change nothing')
      .option('--json', 'print JSON'),
  ).action(async (flags: AgentFlags & { dryRun?: boolean; json?: boolean }) => {
    const dryRun = flags.dryRun === true;
    const results = await withAgent(flags, async (agent) => {
      const held = (await agent.lock.ensure()) === 'held';
      if (!held && !dryRun) throw new ExitError(EXIT_FAILURE, 'another tidemark agent is running against this local database; stop it or use --dry-run');
      return agent.verify({ dryRun }); // withAgent's agent.stop() gives the lock up
    });
    if (flags.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    else for (const r of results) printDiff(r, dryRun);
    const failed = results.filter((r) => r.error || !r.converged);
    if (failed.length) throw new ExitError(EXIT_FAILURE, dryRun ? `${failed.length} table(s) differ` : `${failed.length} table(s) failed to verify`);
  });

  program
    .command('resync')
    .description('ask the agent of a client database to verify and repair every row of its tables on its next run')
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)')
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--database-id <uuid>', 'database id')
    .option('--tables <list>', 'comma-separated tables (default: all of the database)')
    .action(async (flags: { config?: string; server?: string; adminKey?: string; client: string; databaseId: string; tables?: string }) => {
      const { serverUrl: server, adminKey } = adminConfigFrom(flags);
      const tables = flags.tables ? splitList(flags.tables).map((t) => parseTableName(t)) : undefined;
      const body = tables ? { tables: splitList(flags.tables ?? '') } : {};
      const res = await adminRequest<{ tables: string[] }>(
        server,
        adminKey,
        'POST',
        `/v1/admin/customers/${encodeURIComponent(flags.client)}/databases/${encodeURIComponent(flags.databaseId)}/resync`,
        body,
      );
      process.stdout.write(`resync requested for ${res.tables.join(', ')}; the agent picks it up on its next run (see tidemark status)\n`);
    });
}
