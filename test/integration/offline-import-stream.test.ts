/**
 * `tidemark import` streams the bundle: the command's memory does not grow with the bundle. Before,
 * it sent the file through fetch, which in Node 20 kept every byte of a stream body in memory until
 * the answer: the command's peak RSS was the bundle's size plus ~100 MiB (319 MiB for a 2M-row
 * bundle of 213 MiB, `npm run bench -- offline`), so a 10M-row bundle needed over a gigabyte.
 *
 * A stub HTTP server on 127.0.0.1 takes the whole body; before it answers (the command is blocked
 * waiting), the test reads the command's peak RSS (VmHWM) from /proc. A 256 MiB bundle may cost at
 * most a quarter of its size more than a 1 MiB one (before: its whole size more), however fast
 * either side is.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

const BIN = join(import.meta.dirname, '../../dist/cli/main.js');
const MiB = 1024 * 1024;
const BUNDLE_BYTES = 256 * MiB;

/** Peak resident set of a live process (Linux). */
function peakRss(pid: number): number {
  const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

/** Imports a file of `bytes` into a stub server; the command's peak RSS while it waits for the answer, and its result. */
async function importPeak(dir: string, bytes: number): Promise<{ peak: number; received: number; code: number; stderr: string }> {
  const bundle = join(dir, `bundle-${bytes}.tmb`);
  writeFileSync(bundle, Buffer.alloc(bytes, 0x61));
  let pid = 0;
  let peak = 0;
  let received = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => {
      received += c.length;
    });
    req.on('end', () => {
      peak = peakRss(pid);
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'TM_REQUEST_INVALID', message: 'bundle refused: stub server; nothing was changed', requestId: 'req-1' } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [BIN, 'import', '--server', url, '--admin-key', 'k'.repeat(32), bundle, '--receipt-out', join(dir, 'receipt.json')],
        { env: { PATH: process.env.PATH ?? '' } },
        (err, _stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr }),
      );
      pid = child.pid ?? 0;
    });
    return { peak, received, ...run };
  } finally {
    server.close();
    rmSync(bundle, { force: true });
  }
}

describe('tidemark import', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-import-stream-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('streams the bundle to the server without holding it in memory', async () => {
    const small = await importPeak(dir, MiB);
    const big = await importPeak(dir, BUNDLE_BYTES);
    for (const [r, bytes] of [
      [small, MiB],
      [big, BUNDLE_BYTES],
    ] as const) {
      // The server's refusal, as one line and a non-zero exit; the whole file reached it.
      expect(r.stderr.trim()).toMatch(/^tidemark: import: bundle refused: stub server; nothing was changed/);
      expect(r.code).not.toBe(0);
      expect(r.received).toBe(bytes);
      expect(r.peak).toBeGreaterThan(0);
    }
    // What the command needs beyond its own start does not grow with the bundle.
    expect(big.peak - small.peak).toBeLessThan(BUNDLE_BYTES / 4);
  });
});
