import type { Command } from 'commander';

import { configSectionOf, writeConfigValues } from '../agent/config-file.js';
import { tlsConfigSchema } from '../shared/config/agent-config.js';
import { ConfigError } from '../shared/errors.js';
import { CLIENT_ID_PATTERN } from '../shared/protocol.js';
import { registerDatabase } from './admin-client.js';
import { adminConfigFrom, networkFrom } from './common.js';
import { enrollDatabase } from './key-client.js';

interface RegisterFlags {
  config?: string;
  server?: string;
  adminKey?: string;
  enrollToken?: string;
  client?: string;
  name: string;
}

export function registerCommand(program: Command): void {
  program
    .command('register')
    .description(
      'register an on-prem database: with an enrollment token (no admin key), writes its credentials into the agent config (--config, mode 0600) or prints them; with the admin key, prints {"clientId","databaseId","apiKey"} (the key is shown once)',
    )
    .option(
      '--config <file>',
      'with --enroll-token: the agent config file to write the credentials into; else a YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)',
    )
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--enroll-token <token>', 'enrollment token from `tidemark enroll-token` (env TIDEMARK_ENROLL_TOKEN)')
    .option('--admin-key <key>', 'admin API key, without --enroll-token (env TIDEMARK_ADMIN_KEY)')
    .option('--client <id>', 'client id, with the admin key: lower-case letters, digits, - and _')
    .requiredOption('--name <name>', 'a name for the database, e.g. the site')
    .action(async (flags: RegisterFlags) => {
      const token = flags.enrollToken ?? process.env.TIDEMARK_ENROLL_TOKEN;
      if (token) {
        await registerWithToken(token, flags);
        return;
      }
      const { serverUrl: server, adminKey } = adminConfigFrom(flags);
      if (flags.client === undefined) throw new ConfigError('--client is required with the admin key (an enrollment token names its client itself)');
      if (!CLIENT_ID_PATTERN.test(flags.client))
        throw new ConfigError(`invalid --client ${JSON.stringify(flags.client)}: use lower-case letters, digits, - and _`);
      const result = await registerDatabase(server, adminKey, flags.client, flags.name);
      process.stdout.write(`${JSON.stringify({ clientId: result.clientId, databaseId: result.databaseId, apiKey: result.apiKey })}\n`);
    });
}

/** Registration by enrollment token: the credentials go into the agent's config file, or to stdout. */
async function registerWithToken(token: string, flags: RegisterFlags): Promise<void> {
  const serverUrl = flags.server ?? process.env.TIDEMARK_SERVER_URL;
  if (!serverUrl) throw new ConfigError('serverUrl is required (--server or TIDEMARK_SERVER_URL)');
  if (flags.client !== undefined) throw new ConfigError('--client goes with the admin key: an enrollment token names its client itself');
  try {
    new URL(serverUrl);
  } catch {
    throw new ConfigError(`invalid --server ${JSON.stringify(serverUrl)}: use a URL such as https://sync.example.com`);
  }
  // The agent config may already say how to reach the server (tls.caFile for a private CA, a client certificate).
  const result = await enrollDatabase(serverUrl, token, flags.name, networkFrom(flags.config ? tlsOfConfigFile(flags.config) : {}, process.env));
  if (flags.config) {
    writeConfigValues(flags.config, { serverUrl, clientId: result.clientId, databaseId: result.databaseId, apiKey: result.apiKey });
    process.stdout.write(`${JSON.stringify({ clientId: result.clientId, databaseId: result.databaseId, config: flags.config })}\n`);
    return;
  }
  process.stdout.write(`${JSON.stringify({ clientId: result.clientId, databaseId: result.databaseId, apiKey: result.apiKey })}\n`);
}

/** The `tls` section of the agent config file being registered (checked as the agent checks it); none when absent. */
function tlsOfConfigFile(file: string): { caFile?: string | undefined; certFile?: string | undefined; keyFile?: string | undefined } {
  const parsed = tlsConfigSchema.safeParse(configSectionOf(file, 'tls') ?? {});
  if (!parsed.success) throw new ConfigError(`${file}: tls: ${parsed.error.issues.map((i) => `${i.path.join('.') || 'tls'}: ${i.message}`).join('; ')}`);
  return parsed.data;
}
