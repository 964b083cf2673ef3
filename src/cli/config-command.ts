import type { Command } from 'commander';

import { loadServerConfig } from '../shared/config/server-config.js';
import { ConfigError } from '../shared/errors.js';
import { redactUrl } from '../shared/pg.js';
import { type AgentFlags, addAgentOptions, agentConfigFrom } from './common.js';

export function configCommand(program: Command): void {
  const config = program.command('config').description('configuration tools');
  addAgentOptions(
    config
      .command('check')
      .description('load the configuration (defaults < file < TIDEMARK_* env < flags), report every problem, print it redacted')
      .option('--kind <kind>', 'agent or server', 'agent')
      .option('--admin-key <key>', 'server: admin key')
      .option('--listen <host:port>', 'server: listen address'),
  ).action(async (flags: AgentFlags & { kind: string; adminKey?: string; listen?: string }) => {
    let resolved: Record<string, unknown>;
    if (flags.kind === 'server') {
      const c = loadServerConfig({
        file: flags.config ?? process.env.TIDEMARK_CONFIG,
        env: process.env,
        flags: { databaseUrl: flags.database, adminKey: flags.adminKey, listen: flags.listen },
      });
      resolved = { ...c, databaseUrl: redactUrl(c.databaseUrl), adminKey: '***' };
    } else if (flags.kind === 'agent') {
      const c = agentConfigFrom(flags, process.env);
      resolved = { ...c, databaseUrl: redactUrl(c.databaseUrl), apiKey: '***' };
    } else throw new ConfigError(`--kind must be agent or server, not ${flags.kind}`);
    process.stdout.write(`${JSON.stringify(resolved, null, 2)}\n`);
  });
}
