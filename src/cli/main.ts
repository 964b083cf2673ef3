#!/usr/bin/env node
/**
 * The `tidemark` command: the composition root. Only cli/ reads argv and env, and only this file
 * exits the process.
 */
import { describeError } from './common.js';
import { runCli } from './program.js';

process.on('unhandledRejection', (e) => {
  process.stderr.write(`tidemark: unexpected error: ${describeError(e).line}\n`);
  process.exit(70);
});

await runCli(process.argv);
