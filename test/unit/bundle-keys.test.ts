/**
 * isBundleKeys (the import's check of key-set frames, made in place because a frame holds about
 * 100,000 rows) accepts exactly what bundleKeysSchema accepts: seeded random frames, valid and
 * broken in one place each, compared with the schema's verdict.
 */
import { describe, expect, it } from 'vitest';

import { bundleKeysSchema, isBundleKeys } from '../../src/shared/protocol/bundle.js';
import { seededRandom } from '../support/seeded-random.js';

/** Values that replace one part of a valid frame. */
const ODD: unknown[] = [null, undefined, 1, -1, 1.5, '1', '', 'x', '-1', '99999999999999999999999', [], {}, [[]], ['a'], [1], true];

describe('isBundleKeys', () => {
  it('agrees with bundleKeysSchema on valid frames and on frames broken in one place', () => {
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`bundle key-set check seed: ${seed} (replay with TIDEMARK_TEST_SEED=${seed})`);
    const random = seededRandom(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const frame = (): { buckets: unknown[]; rows: unknown[][] } => ({
      buckets: Array.from({ length: Math.floor(random() * 4) }, () => Math.floor(random() * 1024)),
      rows: Array.from({ length: Math.floor(random() * 5) }, () => [
        Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(['1', 'a "b"', 'é', '', '\\'])),
        String(Math.floor(random() * 1e9)),
      ]),
    });
    let accepted = 0;
    for (let i = 0; i < 2000; i++) {
      const f = frame();
      let value: unknown = f;
      switch (Math.floor(random() * 7)) {
        case 0:
          break; // valid
        case 1:
          value = pick(ODD);
          break;
        case 2:
          f.buckets.push(pick(ODD));
          break;
        case 3:
          f.rows.push(pick(ODD) as unknown[]);
          break;
        case 4:
          f.rows.push([pick(ODD), '1']);
          break;
        case 5:
          f.rows.push([['k'], pick(ODD)]);
          break;
        case 6:
          f.rows.push([['k', pick(ODD)], '1', ...(random() < 0.5 ? ['extra'] : [])]);
          break;
      }
      const expected = bundleKeysSchema.safeParse(value).success;
      expect(isBundleKeys(value), JSON.stringify(value)).toBe(expected);
      if (expected) accepted++;
    }
    // Both verdicts were met many times.
    expect(accepted).toBeGreaterThan(200);
    expect(accepted).toBeLessThan(1800);
  });
});
