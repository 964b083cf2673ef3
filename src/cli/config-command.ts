import type { Command } from 'commander';

import { agentConfigSchema } from '../shared/config/agent-config.js';
import { connectionString, redactConfig, secretString } from '../shared/config/redact.js';
import { loadServerConfig, serverConfigSchema } from '../shared/config/server-config.js';
import { ConfigError } from '../shared/errors.js';
import { type AgentFlags, addAgentOptions, agentConfigFrom } from './common.js';

/**
 * The server schema with its secrets marked, for redaction only. TODO(merge): server-config.ts
 * declares `databaseUrl: connectionString()` and `adminKey: secretString(16, …)` itself; then this
 * goes and `serverConfigSchema` is used directly.
 */
const serverRedaction = serverConfigSchema.extend({ databaseUrl: connectionString(), adminKey: secretString() });

export function configCommand(program: Command): void {
  const config = program.command('config').description('configuration tools');
  addAgentOptions(
    config
      .command('check')
      .description('load the configuration as the commands do (defaults < file < TIDEMARK_* env < flags), report every problem, print it redacted')
      .option('--kind <kind>', 'agent or server', 'agent')
      .option('--schedule <cron>', 'agent: cron expression of runs')
      .option('--metrics-listen <host:port>', 'agent: where /metrics is served')
      .option('--admin-key <key>', 'server: admin key')
      .option('--listen <host:port>', 'server: listen address'),
  ).action(async (flags: AgentFlags & { kind: string; adminKey?: string; listen?: string }) => {
    let resolved: unknown;
    if (flags.kind === 'server') {
      const c = loadServerConfig({
        file: flags.config ?? process.env.TIDEMARK_CONFIG,
        env: process.env,
        flags: { databaseUrl: flags.database, adminKey: flags.adminKey, listen: flags.listen },
      });
      resolved = redactConfig(serverRedaction, c);
    } else if (flags.kind === 'agent') {
      resolved = redactConfig(agentConfigSchema, agentConfigFrom(flags, process.env));
    } else throw new ConfigError(`--kind must be agent or server, not ${flags.kind}`);
    process.stdout.write(`${JSON.stringify(resolved, null, 2)}\n`);
  });
}
