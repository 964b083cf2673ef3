import type { Command } from 'commander';

import { ConfigError } from '../shared/errors.js';
import { CLIENT_ID_PATTERN } from '../shared/protocol.js';
import { registerDatabase } from './admin-client.js';
import { adminConfigFrom } from './common.js';

export function registerCommand(program: Command): void {
  program
    .command('register')
    .description('register an on-prem database for a client; prints {"clientId","databaseId","apiKey"} (the key is shown once)')
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)')
    .requiredOption('--client <id>', 'client id: lower-case letters, digits, - and _')
    .requiredOption('--name <name>', 'a name for the database, e.g. the site')
    .action(async (flags: { config?: string; server?: string; adminKey?: string; client: string; name: string }) => {
      const { serverUrl: server, adminKey } = adminConfigFrom(flags);
      if (!CLIENT_ID_PATTERN.test(flags.client))
        throw new ConfigError(`invalid --client ${JSON.stringify(flags.client)}: use lower-case letters, digits, - and _`);
      const result = await registerDatabase(server, adminKey, flags.client, flags.name);
      process.stdout.write(`${JSON.stringify({ clientId: result.clientId, databaseId: result.databaseId, apiKey: result.apiKey })}\n`);
    });
}
