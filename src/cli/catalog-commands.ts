/**
 * The admin's commands on the shared replica catalog (docs/security.md, The shared catalog):
 * `tidemark admitted-tables` lists the admitted tables and their keys, `tidemark admit-table`
 * admits one with its key (confirming a provisional admission, or re-keying the replica).
 */
import type { Command } from 'commander';

import { type AdmittedTableList, adminPaths, parseTableName } from '../shared/protocol.js';
import { adminRequest } from './admin-client.js';
import { adminConfigFrom, EXIT_USAGE, ExitError } from './common.js';

interface AdminFlags {
  config?: string;
  server?: string;
  adminKey?: string;
}

const collect = (value: string, previous: string[]): string[] => [...previous, value];

/** `"id integer"` → { name: 'id', type: 'integer' }: the name, then the type as format_type() prints it. */
function keyColumn(text: string): { name: string; type: string } {
  const m = /^\s*(\S+)\s+(.+?)\s*$/.exec(text);
  if (!m) throw new ExitError(EXIT_USAGE, `--key ${JSON.stringify(text)}: expected "<column> <type>", e.g. --key "id integer"`);
  return { name: m[1] as string, type: m[2] as string };
}

export function catalogCommands(program: Command): void {
  const admin = (cmd: Command): Command =>
    cmd
      .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
      .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
      .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)');

  admin(program.command('admitted-tables').description('list the tables admitted for replication, their keys, and how many databases declare them'))
    .option('--json', 'print JSON')
    .action(async (flags: AdminFlags & { json?: boolean }) => {
      const { serverUrl, adminKey } = adminConfigFrom(flags);
      const res = await adminRequest<AdmittedTableList>(serverUrl, adminKey, 'GET', adminPaths.tables());
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
        return;
      }
      for (const t of res.tables)
        process.stdout.write(
          `${t.table}  key (${t.keyColumns.map((c) => `${c.name} ${c.type}`).join(', ')})${t.provisional ? '  provisional' : ''}  databases ${t.tenants}${t.blocked ? `, ${t.blocked} blocked` : ''}\n`,
        );
    });

  admin(
    program.command('admit-table <table>').description("admit a table for replication with its primary key (a different key than the replica's re-keys it)"),
  )
    .requiredOption('--key <column>', 'a key column and its type, e.g. --key "id integer"; repeat in key order', collect, [])
    .action(async (name: string, flags: AdminFlags & { key: string[] }) => {
      const { serverUrl, adminKey } = adminConfigFrom(flags);
      const table = parseTableName(name);
      const res = await adminRequest<{ rekeyed: number }>(serverUrl, adminKey, 'PUT', adminPaths.table(table), { keyColumns: flags.key.map(keyColumn) });
      process.stdout.write(
        `${name} admitted${res.rekeyed ? `; re-keyed: the rows of ${res.rekeyed} database(s) on the former key left the replica and are sent again once they declare this key` : ''}\n`,
      );
    });
}
