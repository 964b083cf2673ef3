/**
 * `npm start` with no configuration: the demo boots embedded PostgreSQL, syncs the sample tables and
 * stops cleanly on Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');

describe('embedded PostgreSQL', () => {
  it('leaves the exit code to the process (a test runner that failed must exit non-zero)', async () => {
    const script = `
      const { startEmbeddedCluster } = await import(${JSON.stringify(join(import.meta.dirname, '../../dist/cli/embedded-cluster.js'))});
      const cluster = await startEmbeddedCluster();
      await cluster.stop();
      process.exitCode = 3;`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { PATH: process.env.PATH ?? '' }, stdio: 'ignore' });
    expect(await new Promise((resolve) => child.on('exit', (code) => resolve(code)))).toBe(3);
  });
});

describe('npm start (the demo)', () => {
  it('syncs the sample tables on an embedded PostgreSQL and stops on SIGINT', async () => {
    const child = spawn(process.execPath, [BIN, 'start', '--log-level', 'error'], {
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    // Resolved when the demo says it is running, or when it exits first: no clock decides (the
    // test's timeout is only the safety net), however slow the machine.
    let onOutput = (): void => {};
    const running = new Promise<void>((resolve) => {
      onOutput = () => {
        if (out.includes('Press Ctrl-C to stop.')) resolve();
      };
      child.on('exit', () => resolve());
    });
    const collect = (c: Buffer): void => {
      out += c.toString();
      onOutput();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await running;
      expect(out).toContain('tidemark demo is running');
      expect(out).toMatch(/first sync +inventory\.stock 500 rows, public\.customers 1000 rows, public\.orders 5000 rows\n/);
      expect(out).toMatch(/agent metrics +http:\/\/127\.0\.0\.1:\d+\/metrics/);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
  });
});
