import { describe, expect, it } from 'vitest';

import { countRows, cutChunks } from '../../src/agent/copy-rows.js';
import { seededRandom } from '../support/seeded-random.js';

/**
 * The rule, on the whole text at once: the end of the last complete row within `rows` rows and
 * `bytes` bytes, or of the first row if it alone is larger; 0 when no row is complete.
 */
function referenceCut(text: string, rows: number, bytes: number): number {
  let end = 0;
  let n = 0;
  for (const line of text.split('\n').slice(0, -1)) {
    const next = end + Buffer.byteLength(line) + 1;
    if (n >= rows || (n > 0 && next > bytes)) break;
    end = next;
    n++;
  }
  return end;
}

describe('cutting COPY text into batches', () => {
  it('cuts chunks where the rule cuts their concatenation, and leaves the rest uncopied', () => {
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`cutChunks seed: ${seed} (replay with TIDEMARK_TEST_SEED=${seed})`);
    const random = seededRandom(seed);
    const int = (n: number): number => Math.floor(random() * n);
    for (let trial = 0; trial < 2000; trial++) {
      const rowCount = int(12);
      let text = '';
      for (let r = 0; r < rowCount; r++) text += `${r}\t${'x'.repeat(int(20))}\n`;
      if (random() < 0.3) text += 'partial row';
      const all = Buffer.from(text);
      const chunks: Buffer[] = [];
      for (let at = 0; at < all.length; ) {
        const size = 1 + int(random() < 0.5 ? 4 : 40);
        chunks.push(all.subarray(at, at + size));
        at += size;
      }
      const rows = 1 + int(8);
      const bytes = 1 + int(120);
      const end = referenceCut(text, rows, bytes);
      const cut = cutChunks(chunks, rows, bytes);
      const context = `seed ${seed} trial ${trial}: ${JSON.stringify(text)} rows ${rows} bytes ${bytes}`;
      expect(cut.batch.toString(), context).toBe(all.subarray(0, end).toString());
      expect(cut.rows, context).toBe(countRows(all.subarray(0, end)));
      expect(Buffer.concat(cut.rest).toString(), context).toBe(all.subarray(end).toString());
      // Which limit ended the batch: rows (a complete row was left for the next), bytes (the next
      // row would end beyond the limit), or the text (no complete row left).
      const next = text.indexOf('\n', end);
      const nextEnd = next === -1 ? -1 : next + 1;
      if (cut.bound === 'rows') expect(cut.rows === rows && nextEnd !== -1, context).toBe(true);
      if (cut.bound === 'bytes') expect(nextEnd === -1 || nextEnd > bytes, context).toBe(true);
      if (cut.bound === 'end') expect(nextEnd, context).toBe(-1);
      // The rest is views of the chunks, not copies.
      const inside = (r: Buffer, c: Buffer): boolean =>
        r.buffer === c.buffer && r.byteOffset >= c.byteOffset && r.byteOffset + r.length <= c.byteOffset + c.length;
      for (const r of cut.rest)
        expect(
          chunks.some((c) => inside(r, c)),
          context,
        ).toBe(true);
    }
  });

  it('sends a first row larger than the byte limit alone, and nothing when no row is complete', () => {
    const cut = cutChunks([Buffer.from('1\tlong'), Buffer.from(' row\n2\tb\n')], 10, 3);
    expect(cut.batch.toString()).toBe('1\tlong row\n');
    expect(cut.rows).toBe(1);
    expect(Buffer.concat(cut.rest).toString()).toBe('2\tb\n');
    const none = cutChunks([Buffer.from('1\tno newline')], 10, 100);
    expect(none.rows).toBe(0);
    expect(none.batch.length).toBe(0);
    expect(Buffer.concat(none.rest).toString()).toBe('1\tno newline');
  });
});
