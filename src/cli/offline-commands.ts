/**
 * Offline sites (README, Offline sites): `tidemark export` writes a bundle from the local database
 * with no network; `tidemark import` streams it to the server's admin API and writes the receipt the
 * site's next export starts from. Each prints one JSON line.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';

import type { Command } from 'commander';

import { exportBundle } from '../agent/bundle-export.js';
import { proxySettingsFrom } from '../agent/http-transport.js';
import { ConfigError } from '../shared/errors.js';
import {
  BUNDLE_CONTENT_TYPE,
  type BundleImportResult,
  type BundleReceipt,
  bundleImportResultSchema,
  bundleReceiptSchema,
  bundleStatusSchema,
} from '../shared/protocol/bundle.js';
import { adminPaths, CLIENT_ID_PATTERN, parseTableName } from '../shared/protocol.js';
import { adminRequest } from './admin-client.js';
import { adminConfigFrom, localPool, logger, splitList } from './common.js';
import { bearerPost } from './key-client.js';

interface ExportFlags {
  database?: string;
  client?: string;
  databaseId?: string;
  apiKey?: string;
  out: string;
  receipt?: string;
  tables?: string;
}

function required(value: string | undefined, flag: string, env: string): string {
  if (!value) throw new ConfigError(`${flag} is required (or ${env})`);
  return value;
}

async function readReceipt(path: string): Promise<BundleReceipt> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read the receipt ${path}: ${(e as Error).message}`);
  }
  const parsed = bundleReceiptSchema.safeParse(json);
  if (!parsed.success) throw new ConfigError(`${path} is not a tidemark receipt (${parsed.error.issues[0]?.message ?? 'invalid'})`);
  return parsed.data;
}

/**
 * Streams the bundle to the server (read from the file only as fast as the socket takes it), with
 * no timeout: the server answers once it has applied the whole bundle; the parsed answer.
 */
async function postBundle(serverUrl: string, adminKey: string, path: string): Promise<BundleImportResult> {
  let length: number;
  try {
    length = (await stat(path)).size;
  } catch (e) {
    throw new ConfigError(`cannot read the bundle ${path}: ${(e as Error).message}`);
  }
  const body = { bytes: { stream: createReadStream(path), length }, contentType: BUNDLE_CONTENT_TYPE };
  return bearerPost(serverUrl, adminKey, adminPaths.bundles(), body, bundleImportResultSchema, 'import', { proxy: proxySettingsFrom(process.env) }, null);
}

export function offlineCommands(program: Command): void {
  program
    .command('export')
    .description('write a bundle of what the cloud lacks (no network); prints {"tables","rows","deletes","bytes",...}')
    .option('--database <url>', 'local database URL (env TIDEMARK_DATABASE_URL)')
    .option('--client <id>', 'client id (env TIDEMARK_CLIENT_ID)')
    .option('--database-id <uuid>', 'database id from registration (env TIDEMARK_DATABASE_ID)')
    .option('--api-key <key>', 'API key from registration: authenticates the bundle (env TIDEMARK_API_KEY)')
    .requiredOption('--out <file>', 'the bundle to write')
    .option('--receipt <file>', "the last import's receipt (without it, the bundle carries everything)")
    .option('--tables <list>', 'comma-separated tables (default: every tracked table)')
    .action(async (flags: ExportFlags) => {
      const env = process.env;
      const databaseUrl = required(flags.database ?? env.TIDEMARK_DATABASE_URL, '--database', 'TIDEMARK_DATABASE_URL');
      const clientId = required(flags.client ?? env.TIDEMARK_CLIENT_ID, '--client', 'TIDEMARK_CLIENT_ID');
      const databaseId = required(flags.databaseId ?? env.TIDEMARK_DATABASE_ID, '--database-id', 'TIDEMARK_DATABASE_ID');
      const apiKey = required(flags.apiKey ?? env.TIDEMARK_API_KEY, '--api-key', 'TIDEMARK_API_KEY');
      if (!CLIENT_ID_PATTERN.test(clientId)) throw new ConfigError(`invalid --client ${JSON.stringify(clientId)}: use lower-case letters, digits, - and _`);
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(databaseId))
        throw new ConfigError(`invalid --database-id ${JSON.stringify(databaseId)}: a UUID from tidemark register`);
      const receipt = flags.receipt ? await readReceipt(flags.receipt) : null;
      const pool = localPool(databaseUrl, logger('error', 'error', 2), 'tidemark-export');
      try {
        const result = await exportBundle({
          pool,
          clientId,
          databaseId,
          apiKey,
          out: flags.out,
          receipt,
          tables: flags.tables ? splitList(flags.tables).map((t) => parseTableName(t)) : null,
        });
        process.stdout.write(`${JSON.stringify(result)}\n`);
      } finally {
        await pool.end();
      }
    });

  program
    .command('import')
    .description("apply an offline site's bundle through the server's admin API and write the receipt; prints one JSON line")
    .argument('<bundle>', 'the bundle file written by tidemark export')
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)')
    .requiredOption('--receipt-out <file>', "where to write the receipt for the site's next export")
    .action(async (bundle: string, flags: { config?: string; server?: string; adminKey?: string; receiptOut: string }) => {
      const { serverUrl, adminKey } = adminConfigFrom(flags);
      const { receipt, ...result } = await postBundle(serverUrl, adminKey, bundle);
      await writeFile(flags.receiptOut, `${JSON.stringify(receipt)}\n`);
      process.stdout.write(`${JSON.stringify({ ...result, receiptOut: flags.receiptOut })}\n`);
      if (result.applied && !result.matches)
        process.stderr.write(
          'tidemark: warning: the cloud copy differs from what the bundle says the site held; unless the site synced online since the export, export once without --receipt\n',
        );
    });

  program
    .command('bundle-status')
    .description('the last bundle a database imported and how old the cloud copy is by it; prints one JSON line')
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)')
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--database-id <uuid>', 'database id')
    .action(async (flags: { config?: string; server?: string; adminKey?: string; client: string; databaseId: string }) => {
      const { serverUrl, adminKey } = adminConfigFrom(flags);
      const status = await adminRequest(serverUrl, adminKey, 'GET', adminPaths.bundle(flags.client, flags.databaseId), undefined, bundleStatusSchema);
      process.stdout.write(`${JSON.stringify(status)}\n`);
    });
}
