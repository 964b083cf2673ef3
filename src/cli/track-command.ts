import type { Command } from 'commander';

import { PgTableTracking } from '../agent/local/table-tracking.js';
import { formatTableName } from '../shared/protocol.js';
import { databaseUrlFrom, localPool, logger, splitList } from './common.js';

export function trackCommand(program: Command): void {
  program
    .command('track')
    .description('install tracking on local tables (version column, trigger, index); idempotent')
    .argument('<tables...>', 'tables as schema.table (or table on the search_path)')
    .option('--config <file>', 'YAML file with databaseUrl, e.g. the agent config (env TIDEMARK_CONFIG)')
    .option('--database <url>', 'local database URL (env TIDEMARK_DATABASE_URL)')
    .option('--key-columns <list>', 'key columns for a table without a primary key (unique, not null)')
    .option('--modified-column <name>', 'timestamp column bumped on every write, for lag in seconds (e.g. updated_at)')
    .action(async (tables: string[], flags: { config?: string; database?: string; keyColumns?: string; modifiedColumn?: string }) => {
      const url = databaseUrlFrom(flags);
      const log = logger(undefined, 'warn', 2);
      const pool = localPool(url, log, 'tidemark-track');
      try {
        const local = new PgTableTracking(pool);
        for (const t of tables) {
          const tracked = await local.track(t, {
            keyColumns: flags.keyColumns ? splitList(flags.keyColumns) : undefined,
            modifiedColumn: flags.modifiedColumn,
          });
          process.stdout.write(`tracking ${formatTableName(tracked.name)} (key: ${tracked.shape.keyColumns.join(', ')})\n`);
        }
      } finally {
        await pool.end();
      }
    });

  program
    .command('untrack')
    .description('stop tracking local tables (drops the trigger; keeps the column and index)')
    .argument('<tables...>', 'tables as schema.table')
    .option('--config <file>', 'YAML file with databaseUrl (env TIDEMARK_CONFIG)')
    .option('--database <url>', 'local database URL (env TIDEMARK_DATABASE_URL)')
    .action(async (tables: string[], flags: { config?: string; database?: string }) => {
      const url = databaseUrlFrom(flags);
      const pool = localPool(url, logger(undefined, 'warn', 2), 'tidemark-track');
      try {
        const local = new PgTableTracking(pool);
        for (const t of tables) process.stdout.write(`untracked ${formatTableName(await local.untrack(t))}\n`);
      } finally {
        await pool.end();
      }
    });
}
