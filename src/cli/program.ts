/** The `tidemark` program: every command, and how a run ends (exit code, one-line error). */
import { Command, CommanderError } from 'commander';

import { TIDEMARK_VERSION } from '../shared/metrics/build-info.js';
import { agentCommands } from './agent-commands.js';
import { catalogCommands } from './catalog-commands.js';
import { type DatabaseSide, describeError, EXIT_USAGE } from './common.js';
import { configCommand } from './config-command.js';
import { demoCommand } from './demo-command.js';
import { fleetCommand } from './fleet-command.js';
import { inspectCommands } from './inspect-commands.js';
import { keyCommands } from './key-commands.js';
import { offlineCommands } from './offline-commands.js';
import { registerCommand } from './register-command.js';
import { serverCommand } from './server-command.js';
import { trackCommand } from './track-command.js';

export function buildProgram(): Command {
  const program = new Command()
    .name('tidemark')
    .description('Keeps a per-customer cloud copy of on-premises PostgreSQL tables.')
    .version(TIDEMARK_VERSION)
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`tidemark: ${text.replace(/^error: /, '').trim()}\n`) });
  serverCommand(program);
  registerCommand(program);
  catalogCommands(program);
  trackCommand(program);
  agentCommands(program);
  inspectCommands(program);
  configCommand(program);
  demoCommand(program);
  offlineCommands(program);
  keyCommands(program);
  fleetCommand(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

/** The database each command works on directly (the others reach databases only through the server). */
const DATABASE_SIDE: Readonly<Record<string, DatabaseSide>> = {
  server: 'cloud database',
  track: 'local database',
  untrack: 'local database',
  sync: 'local database',
  agent: 'local database',
  status: 'local database',
  verify: 'local database',
  export: 'local database',
};

/** Runs the CLI with these arguments; sets process.exitCode. */
export async function runCli(argv: readonly string[]): Promise<void> {
  let side: DatabaseSide | undefined;
  try {
    const program = buildProgram();
    program.hook('preAction', (_root, action) => {
      side = DATABASE_SIDE[action.name()];
    });
    await program.parseAsync([...argv]);
    process.exitCode = 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with code 0; usage errors were already printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : EXIT_USAGE;
      return;
    }
    const { line, exitCode } = describeError(e, side);
    process.stderr.write(`tidemark: ${line}\n`);
    process.exitCode = exitCode;
  }
}
