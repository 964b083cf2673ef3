/**
 * What the service managers of deploy/ rely on, through the real binary: `tidemark agent` stops
 * cleanly, exit code 0, after the run in flight, on SIGTERM (systemd's stop, `docker stop`) and on
 * SIGINT (what WinSW's Ctrl+C is to Node on Windows). A non-zero exit would make systemd's
 * Restart=always and WinSW's onfailure treat every stop as a crash.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { createDatabase, startTestServer } from '../support/fixtures.js';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');

function runToEnd(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.on('exit', (code) => resolve({ code, output }));
  });
}

describe('tidemark agent under a service manager', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`exits 0 after the run in flight on ${signal}`, async () => {
      await using local = await createDatabase('local');
      await using server = await startTestServer();
      await local.query(`create table items (id int primary key, name text not null)`);
      await local.query(`insert into items select i, 'item ' || i from generate_series(1, 500) i`);
      const reg = await server.register('acme');
      const env = {
        PATH: process.env.PATH ?? '',
        TIDEMARK_DATABASE_URL: local.url,
        TIDEMARK_SERVER_URL: server.url,
        TIDEMARK_CLIENT_ID: reg.clientId,
        TIDEMARK_DATABASE_ID: reg.databaseId,
        TIDEMARK_API_KEY: reg.apiKey,
        TIDEMARK_METRICS_LISTEN: '127.0.0.1:0',
      };
      const track = await runToEnd(['track', 'public.items'], env);
      expect(track.code, track.output).toBe(0);

      const child = spawn(process.execPath, [BIN, 'agent'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      // The agent runs right away; the first table summary line means a run went through.
      const synced = new Promise<void>((resolve, reject) => {
        const onData = (c: Buffer): void => {
          output += c.toString();
          if (output.includes('"msg":"table synced"')) resolve();
        };
        child.stdout.on('data', onData);
        child.stderr.on('data', onData);
        void exited.then((code) => reject(new Error(`agent exited with ${code} before a run: ${output}`)));
      });
      try {
        await synced;
        child.kill(signal);
        expect(await exited, output).toBe(0);
        expect(output).toContain(`"signal":"${signal}"`);
        expect(output).toContain('stopping after the run in flight');
        const [row] = await server.db.query<{ n: string }>(`select count(*)::text as n from public.items`);
        expect(row?.n).toBe('500');
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    });
  }
});
