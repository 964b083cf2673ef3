/**
 * `npm run soak [-- --cycles N] [--rounds N] [--requests N] [--items N] [--seed N] [--quiet] [--log-file FILE]`
 *
 * The fault-injection scenario of test/integration/fault-injection.test.ts, longer: N cycles of the
 * random mix (resets mid-body and after the response, 502/503 before and after the server, delays),
 * agent and server SIGKILLed and restarted, the local database restarted, the cloud database
 * restarted too (it gets its own cluster here), a held upload replayed, a 5xx after a commit, a
 * seeded writer throughout. Prints a summary (faults by kind, writes by kind, rows lost, extra and
 * stale per table) and exits 1 if any check failed. Progress goes to stderr, the summary to stdout.
 * Seed: `--seed N` or TIDEMARK_FAULT_SEED, else random (printed).
 */
import pg from 'pg';

import { DEFAULT_MIX, formatReport, runFaultScenario } from './fault-scenario.js';
import { startLocalCluster } from './local-cluster.js';

function usage(message: string): never {
  process.stderr.write(`${message}\nusage: main.js [--cycles N] [--rounds N] [--requests N] [--items N] [--seed N] [--quiet] [--log-file FILE]\n`);
  process.exit(2);
}

interface SoakArgs {
  cycles: number;
  rounds: number;
  requests: number;
  items: number;
  seed: number;
  quiet: boolean;
  logFile: string;
}

function parseArgs(argv: string[]): SoakArgs {
  const envSeed = process.env.TIDEMARK_FAULT_SEED;
  const out: SoakArgs = {
    logFile: '',
    cycles: 5,
    rounds: 6,
    requests: 40,
    items: 20_000,
    seed: envSeed ? Number(envSeed) : Math.floor(Math.random() * 2 ** 31),
    quiet: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const num = (min: number): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < min) usage(`${a} needs an integer >= ${min}`);
      return n;
    };
    if (a === '--cycles') out.cycles = num(1);
    else if (a === '--rounds') out.rounds = num(1);
    else if (a === '--requests') out.requests = num(1);
    else if (a === '--items') out.items = num(100);
    else if (a === '--seed') out.seed = num(0);
    else if (a === '--quiet') out.quiet = true;
    else if (a === '--log-file') out.logFile = argv[++i] ?? usage('--log-file needs a path');
    else usage(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.seed)) usage('TIDEMARK_FAULT_SEED must be an integer');
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  const stamp = (): string => `${((performance.now() - t0) / 1000).toFixed(1).padStart(6)} s`;
  process.stderr.write(`soak: seed ${args.seed} (replay: TIDEMARK_FAULT_SEED=${args.seed} npm run soak)\n`);
  const cloud = await startLocalCluster();
  try {
    const admin = new pg.Client({ connectionString: `${cloud.baseUrl}postgres` });
    await admin.connect();
    await admin.query('create database cloud');
    await admin.end();
    const report = await runFaultScenario({
      seed: args.seed,
      cloudUrl: `${cloud.baseUrl}cloud`,
      cycles: args.cycles,
      roundsPerCycle: args.rounds,
      requestsPerRound: args.requests,
      items: args.items,
      pairs: Math.ceil(args.items / 10),
      batchRows: Math.max(100, Math.ceil(args.items / 40)),
      mix: DEFAULT_MIX,
      maxSyncAttempts: 4,
      eventTimeoutMs: 120_000,
      restartCloud: () => cloud.restart(),
      ...(args.logFile ? { logFile: args.logFile } : {}),
      ...(args.quiet ? {} : { progress: (line: string) => process.stderr.write(`${stamp()}  ${line}\n`) }),
    });
    process.stdout.write(`\ntidemark soak\n${formatReport(report)}\n`);
    if (report.violations.length) process.exitCode = 1;
  } finally {
    await cloud.stop();
  }
}

await main();
