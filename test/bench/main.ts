/**
 * `npm run bench [-- engine|tuner|verify|source|offline|fleet|fanin ...] [--rows N] [--tuner-rows N] [--reps N] [--versions N] [--agent-yaml YAML] [--quick] [--profile] [--no-baseline] [--shuffled]`
 *
 * Prints tidemark's figures as ratios against baselines measured in the same run (never asserting
 * timings), then one results table. Exits non-zero only when data came out wrong. See README.md.
 */
import { engineBench } from './engine-bench.js';
import { faninBench } from './fanin-bench.js';
import { fleetBench } from './fleet-bench.js';
import { offlineBench } from './offline-bench.js';
import { sourceBench } from './source-bench.js';
import { type BenchOptions, log, Results } from './support.js';
import { tunerBench } from './tuner-bench.js';
import { verifyBench } from './verify-bench.js';

const PARTS = {
  engine: engineBench,
  tuner: tunerBench,
  verify: verifyBench,
  source: sourceBench,
  offline: offlineBench,
  fleet: fleetBench,
  fanin: faninBench,
} as const;
type Part = keyof typeof PARTS;

function usage(message: string): never {
  process.stderr.write(
    `${message}\nusage: main.js [engine|tuner|verify|source|offline|fleet|fanin ...] [--rows N] [--tuner-rows N] [--reps N] [--versions N] [--agent-yaml YAML] [--quick] [--profile] [--no-baseline] [--shuffled]\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): { parts: Part[]; options: BenchOptions } {
  const parts: Part[] = [];
  const options: BenchOptions = {
    rows: 1_000_000,
    tunerRows: 200_000,
    profile: false,
    quick: false,
    noBaseline: false,
    reps: 3,
    versions: 1000,
    agentYaml: '',
    shuffled: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const num = (min = 1000): number => {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < min) usage(`${a} needs an integer >= ${min}`);
      return n;
    };
    if (a in PARTS) parts.push(a as Part);
    else if (a === 'all') parts.push(...(Object.keys(PARTS) as Part[]));
    else if (a === '--rows') options.rows = num();
    else if (a === '--tuner-rows') options.tunerRows = num();
    else if (a === '--reps') options.reps = num(1);
    else if (a === '--versions') options.versions = num(1);
    else if (a === '--agent-yaml') options.agentYaml = argv[++i] ?? usage('--agent-yaml needs YAML text');
    else if (a === '--profile') options.profile = true;
    else if (a === '--quick') options.quick = true;
    else if (a === '--no-baseline') options.noBaseline = true;
    else if (a === '--shuffled') options.shuffled = true;
    else usage(`unknown argument ${a}`);
  }
  if (options.quick && !argv.includes('--rows')) options.rows = 200_000;
  if (options.quick && !argv.includes('--tuner-rows')) options.tunerRows = 50_000;
  return { parts: parts.length ? [...new Set(parts)] : (Object.keys(PARTS) as Part[]), options };
}

async function main(): Promise<void> {
  const { parts, options } = parseArgs(process.argv.slice(2));
  const results = new Results();
  const t0 = performance.now();
  for (const part of parts) {
    try {
      await PARTS[part](options, results);
    } catch (e) {
      results.fail(`${part}: ${(e as Error).stack ?? String(e)}`);
    }
  }
  process.stdout.write(
    `\ntidemark benchmark (${parts.join(', ')}; ${options.rows.toLocaleString('en-US')} rows, tuner ${options.tunerRows.toLocaleString('en-US')} rows; ${((performance.now() - t0) / 1000).toFixed(0)} s)\n`,
  );
  process.stdout.write(`${results.table()}\n`);
  if (results.failures.length) {
    process.stdout.write(`\n${results.failures.length} failure(s):\n${results.failures.map((f) => `  ${f.split('\n')[0]}`).join('\n')}\n`);
    process.exitCode = 1;
  }
  log('done');
}

await main();
