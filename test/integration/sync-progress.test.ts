/**
 * Progress of `sync --once` through the built binary: live lines on a terminal (a pseudo-terminal
 * from util-linux `script`), the summary alone on a pipe, throughput in --json, and the agent's
 * log lines (one info line per table run, one debug line per batch).
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { createDatabase, startTestServer } from '../support/fixtures.js';
import { tidemark } from '../support/run-cli.js';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');

function hasScript(): boolean {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Runs the binary under a pseudo-terminal: stdout is a TTY, as in an interactive shell. */
function inTerminal(args: string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  const quote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  const command = [process.execPath, BIN, ...args].map(quote).join(' ');
  return new Promise((resolve) => {
    execFile('script', ['-qec', command, '/dev/null'], { env: { PATH: process.env.PATH ?? '', TERM: 'xterm', ...env }, timeout: 120_000 }, (err, stdout) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: stdout });
    });
  });
}

describe('sync --once progress', { timeout: 300_000 }, () => {
  it('shows a live line per table on a terminal, the summary alone on a pipe, and throughput in --json', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`create table small (id int primary key)`);
    await local.query(`insert into items select i, repeat('x', 100) || i from generate_series(1, 20000) i`);
    await local.query(`insert into small values (1)`);
    await local.query(`analyze items`);
    const reg = await server.register('acme');
    // Small batches, so the upload takes several of them whatever the machine.
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-progress-'));
    const file = join(dir, 'agent.yaml');
    writeFileSync(file, 'batch:\n  initialBytes: 65536\n  maxBytes: 131072\n');
    const env = {
      TIDEMARK_CONFIG: file,
      TIDEMARK_DATABASE_URL: local.url,
      TIDEMARK_SERVER_URL: server.url,
      TIDEMARK_CLIENT_ID: reg.clientId,
      TIDEMARK_DATABASE_ID: reg.databaseId,
      TIDEMARK_API_KEY: reg.apiKey,
    };
    expect((await tidemark(['track', 'public.items', 'public.small'], env)).code).toBe(0);

    if (hasScript()) {
      const tty = await inTerminal(['sync', '--once'], env);
      expect(tty.code, tty.output).toBe(0);
      // The first line of a table: nothing sent yet, out of the planner's estimate (20,000 after analyze).
      expect(tty.output).toMatch(/public\.items {2}0 \/ ~20,000 rows {2}0% {2}0 rows\/s {2}0\.0 MB\/s/);
      // Its last line, drawn in place (erase line), and the summary after the lines were cleared.
      const shown = tty.output.replaceAll('\x1b', '<ESC>');
      expect(shown).toMatch(/<ESC>\[2Kpublic\.items {2}20,000 (\/ ~20,000 )?rows {2}done {2}[\d,]+ rows\/s {2}\d+\.\d MB\/s {2}\d+\.\d s/);
      expect(shown).toMatch(/<ESC>\[\d+F<ESC>\[0Jpublic\.(items|small): converged/);
    }

    await local.query(`insert into items select i, 'more' from generate_series(20001, 20100) i`);
    const piped = await tidemark(['sync', '--once', '--log-level', 'debug'], env);
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout).not.toContain('\x1b');
    expect(piped.stdout.trim().split('\n')).toHaveLength(2);
    expect(piped.stdout).toMatch(/^public\.items: converged; uploaded 100,/m);
    // Logs on stderr: one info line per table run with rows and duration, debug lines per batch.
    const logs = piped.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; table?: string; rowsUploaded?: number; durationSeconds?: number });
    const runs = logs.filter((l) => l.msg === 'table synced');
    expect(runs.map((l) => [l.table, l.level]).sort()).toEqual([
      ['public.items', 30],
      ['public.small', 30],
    ]);
    expect(runs.find((l) => l.table === 'public.items')).toMatchObject({ rowsUploaded: 100 });
    expect(runs.every((l) => typeof l.durationSeconds === 'number')).toBe(true);
    expect(logs.filter((l) => l.msg === 'batch sent' && l.level === 20).length).toBeGreaterThanOrEqual(1);

    await local.query(`insert into items select i, repeat('y', 100) from generate_series(20101, 25000) i`);
    const json = await tidemark(['sync', '--once', '--json'], env);
    expect(json.code).toBe(0);
    const result = JSON.parse(json.stdout) as {
      tables: { table: string; rowsUploaded: number; bytesUploaded: number; batches: number; rowsPerSecond: number; bytesPerSecond: number }[];
    };
    const items = result.tables.find((t) => t.table === 'public.items');
    expect(items?.rowsUploaded).toBe(4900);
    expect(items?.bytesUploaded).toBeGreaterThan(4900 * 100);
    expect(items?.batches).toBeGreaterThan(1);
    expect(items?.rowsPerSecond).toBeGreaterThan(0);
    expect(items?.bytesPerSecond).toBeGreaterThan(0);
  });
});
