/**
 * `tidemark fleet`: every registered database's health from the server's admin API, worst first
 * (GET /v1/admin/fleet), or one database's tables and last runs (GET .../detail) with --database-id.
 * Exit 0 when the server answered, 1 when it is unreachable or refuses the admin key.
 */
import type { Command } from 'commander';

import {
  adminPaths,
  FLEET_STATES,
  type FleetDatabase,
  type FleetDetail,
  fleetDetailSchema,
  fleetListSchema,
  parseClientId,
  parseDatabaseId,
} from '../shared/protocol.js';
import { adminRequest } from './admin-client.js';
import { adminConfigFrom, EXIT_USAGE, ExitError } from './common.js';
import { humanSeconds } from './human.js';

interface FleetFlags {
  config?: string;
  server?: string;
  adminKey?: string;
  client?: string;
  state?: string;
  databaseId?: string;
  json?: boolean;
}

/** Columns padded to their widest cell. */
export function formatTable(cells: string[][]): string {
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length))) ?? [];
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function ago(iso: string | null, now: number): string {
  return iso === null ? 'never' : `${humanSeconds(Math.max(0, (now - Date.parse(iso)) / 1000))} ago`;
}

function fleetTable(databases: FleetDatabase[], now: number): string {
  const cells = [['STATE', 'CLIENT', 'NAME', 'DATABASE ID', 'LAST REPORT', 'LAST SUCCESS', 'LAG', 'ROWS BEHIND', 'QUARANTINED', 'TABLES', 'ERROR', 'AGENT']];
  for (const d of databases)
    cells.push([
      d.state,
      d.clientId,
      d.name,
      d.databaseId,
      ago(d.lastReportAt, now),
      ago(d.lastSuccessAt, now),
      humanSeconds(d.lagSeconds),
      d.rowsBehind === null ? '-' : String(d.rowsBehind),
      String(d.quarantinedRows),
      String(d.tables),
      d.errorCode ?? '-',
      d.agentVersion ?? '-',
    ]);
  return formatTable(cells);
}

function detailText(detail: FleetDetail, now: number): string {
  const out = [fleetTable([detail.database], now), ''];
  const cells = [
    ['TABLE', 'OUTCOME', 'LOCAL ROWS', 'REMOTE ROWS', 'LOCAL MAX VERSION', 'REMOTE MAX VERSION', 'LAG', 'QUARANTINED', 'SCHEMA', 'RESYNC', 'ERROR'],
  ];
  for (const t of detail.tables)
    cells.push([
      t.table,
      t.lastOutcome ?? '-',
      t.localCount === null ? '-' : String(t.localCount),
      t.remoteCount === null ? '-' : String(t.remoteCount),
      t.localMaxVersion ?? '-',
      t.remoteMaxVersion ?? '-',
      humanSeconds(t.lagSeconds),
      String(t.quarantined.length),
      t.schemaState?.state ?? '-',
      t.resync ? `${t.resync.status}${t.resync.status === 'running' ? ` ${(t.resync.progress * 100).toFixed(0)}%` : ''}` : '-',
      t.errorCode ? `${t.errorCode}: ${t.errorMessage ?? ''}` : '-',
    ]);
  out.push(formatTable(cells));
  for (const t of detail.tables)
    for (const q of t.quarantined) out.push(`quarantined ${t.table} key ${JSON.stringify(q.key)} (${q.attempts} attempts): ${q.error}`);
  const runs = [['RUN AT', 'DURATION', 'OUTCOME', 'ROWS UPLOADED', 'ROWS DELETED', 'ERRORS']];
  for (const r of detail.runs.slice(0, 20))
    runs.push([
      r.at,
      `${r.durationSeconds.toFixed(1)}s`,
      r.outcome,
      String(r.tables.reduce((n, t) => n + t.rowsUploaded, 0)),
      String(r.tables.reduce((n, t) => n + t.rowsDeleted, 0)),
      r.tables
        .filter((t) => t.errorCode)
        .map((t) => `${t.table} ${t.errorCode}`)
        .join(', ') || '-',
    ]);
  out.push('', formatTable(runs));
  return out.join('\n');
}

export function fleetCommand(program: Command): void {
  program
    .command('fleet')
    .description('every registered database with its state, worst first (or one database in detail with --database-id); from the server, with the admin key')
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)')
    .option('--client <id>', 'only this client')
    .option('--state <state>', `only databases in this state: ${FLEET_STATES.join(', ')}`)
    .option('--database-id <uuid>', 'one database in detail: its tables and last runs (needs --client)')
    .option('--json', 'print the API answer as JSON')
    .action(async (flags: FleetFlags) => {
      const { serverUrl, adminKey } = adminConfigFrom(flags);
      if (flags.state !== undefined && !(FLEET_STATES as readonly string[]).includes(flags.state))
        throw new ExitError(EXIT_USAGE, `invalid --state ${flags.state}: use ${FLEET_STATES.join(', ')}`);
      const now = Date.now();
      if (flags.databaseId !== undefined) {
        if (flags.client === undefined) throw new ExitError(EXIT_USAGE, '--database-id needs --client');
        const path = adminPaths.detail(parseClientId(flags.client), parseDatabaseId(flags.databaseId));
        const detail = await adminRequest(serverUrl, adminKey, 'GET', path, undefined, fleetDetailSchema);
        process.stdout.write(`${flags.json ? JSON.stringify(detail, null, 2) : detailText(detail, now)}\n`);
        return;
      }
      const query = new URLSearchParams();
      if (flags.client !== undefined) query.set('client', parseClientId(flags.client));
      if (flags.state !== undefined) query.set('state', flags.state);
      const path = `${adminPaths.fleet()}${query.size > 0 ? `?${query.toString()}` : ''}`;
      const { databases } = await adminRequest(serverUrl, adminKey, 'GET', path, undefined, fleetListSchema);
      process.stdout.write(`${flags.json ? JSON.stringify({ databases }, null, 2) : fleetTable(databases, now)}\n`);
    });
}
