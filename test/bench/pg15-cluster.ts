/**
 * A throwaway cluster of the system PostgreSQL 15 (/usr/lib/postgresql/15), which Debian's
 * pg_comparator package (and its pgcmp extension) targets. initdb with trust authentication on a
 * loopback port; run as user postgres when we are root (PostgreSQL refuses root).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

import { freePort, sql } from './support.js';

const BIN = '/usr/lib/postgresql/15/bin';

export interface Pg15Cluster {
  baseUrl: string;
  port: number;
  /** The server's log (pg_ctl -l). */
  logFile: string;
  url(database: string): string;
  createDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

export function pg15Available(): boolean {
  return existsSync(join(BIN, 'initdb')) && existsSync(join(BIN, 'pg_ctl')) && existsSync('/usr/share/postgresql/15/extension/pgcmp.control');
}

function ids(): { uid: number; gid: number } | null {
  if (userInfo().uid !== 0) return null;
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

export async function startPg15Cluster(): Promise<Pg15Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-pg15-'));
  chmodSync(dir, 0o755);
  const owner = ids();
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const run = (cmd: string, args: string[]): void => {
    execFileSync(join(BIN, cmd), args, { stdio: ['ignore', 'pipe', 'pipe'], ...(owner ? { uid: owner.uid, gid: owner.gid } : {}), cwd: dir });
  };
  const data = join(dir, 'data');
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--encoding=UTF8', '--locale=C']);
  const port = await freePort();
  const settings = [
    '-c listen_addresses=127.0.0.1',
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    '-c max_connections=200',
    // Same settings as the embedded cluster of the other parts.
    '-c fsync=off',
    '-c full_page_writes=off',
  ].join(' ');
  run('pg_ctl', ['-D', data, '-o', settings, '-l', join(dir, 'log'), '-w', 'start']);
  const baseUrl = `postgres://postgres@127.0.0.1:${port}/`;
  return {
    baseUrl,
    port,
    logFile: join(dir, 'log'),
    url: (database) => `${baseUrl}${encodeURIComponent(database)}`,
    createDatabase: async (name) => {
      await sql(`${baseUrl}postgres`, `create database ${name}`);
    },
    stop: async () => {
      try {
        run('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
