import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { describe, expect, it } from 'vitest';

import { endMarkerGuard } from '../../src/server/copy-guard.js';
import { seededRandom } from '../support/seeded-random.js';

/** Whether the body, cut into these chunks, passes the guard. */
async function passes(chunks: Buffer[]): Promise<boolean> {
  try {
    await pipeline(Readable.from(chunks), endMarkerGuard(), async (out: AsyncIterable<Buffer>) => {
      for await (const _ of out);
    });
    return true;
  } catch {
    return false;
  }
}

/** The rule, on the whole body at once: a line that is exactly `\.`, or `\.` and a CR (before LF or the end). */
function hasMarkerLine(body: string): boolean {
  return body.split('\n').some((line) => line === '\\.' || line === '\\.\r');
}

describe('the end-of-data guard', () => {
  it('finds a marker line wherever the chunks cut the body, and nothing else', async () => {
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`end-of-data guard seed: ${seed} (replay with TIDEMARK_TEST_SEED=${seed})`);
    const random = seededRandom(seed);
    const pieces = ['1\tx\n', '\\.', '\\\\.', '\n', '\r', '\r\n', 'a', '\\', '.', '\t'];
    let markers = 0;
    for (let n = 0; n < 400; n++) {
      let body = '';
      const parts = 1 + Math.floor(random() * 12);
      for (let p = 0; p < parts; p++) body += pieces[Math.floor(random() * pieces.length)];
      const bytes = Buffer.from(body);
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length; ) {
        const size = 1 + Math.floor(random() * (random() < 0.5 ? 3 : 12));
        chunks.push(bytes.subarray(at, at + size));
        at += size;
      }
      const expected = !hasMarkerLine(body);
      if (!expected) markers++;
      expect(await passes(chunks), `${JSON.stringify(body)} in chunks ${JSON.stringify(chunks.map((c) => c.toString()))}`).toBe(expected);
    }
    expect(markers).toBeGreaterThan(20);
  });

  it('refuses a marker line at the start, in the middle and at the end of a large chunk', async () => {
    const rows = Buffer.from('1\tx\n'.repeat(10_000));
    expect(await passes([rows])).toBe(true);
    expect(await passes([Buffer.from('\\.\n'), rows])).toBe(false);
    expect(await passes([rows, Buffer.from('\\.\r\n'), rows])).toBe(false);
    expect(await passes([Buffer.concat([rows, Buffer.from('\\.')])])).toBe(false);
    expect(await passes([rows, Buffer.from('\\\\.\n')])).toBe(true);
  });
});
