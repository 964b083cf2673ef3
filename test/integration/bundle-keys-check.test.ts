/**
 * The import's first pass checks each key-set frame with PostgreSQL (PgBundleStore.checkKeySet),
 * which reads the frames during the import: it accepts what bundleKeysSchema accepts (seeded random
 * frames, valid and broken in one place each), except what the import's reader could not read,
 * which it refuses before anything is applied.
 */
import { describe, expect, it } from 'vitest';

import { PgBundleStore } from '../../src/server/bundle-store.js';
import { bundleKeysSchema } from '../../src/shared/protocol/bundle.js';
import { createDatabase } from '../support/fixtures.js';
import { seededRandom } from '../support/seeded-random.js';

/** Values that replace one part of a valid frame. */
const ODD: unknown[] = [null, undefined, 1, -1, 1.5, '1', '', 'x', '-1', '99999999999999999999999', [], {}, [[]], ['a'], [1], true];

describe('the key-set check of an offline import', () => {
  it('agrees with bundleKeysSchema on valid frames and on frames broken in one place', async () => {
    await using db = await createDatabase('local');
    const bundles = new PgBundleStore(db.pool);
    const seed = Number(process.env.TIDEMARK_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`bundle key-set check seed: ${seed} (replay with TIDEMARK_TEST_SEED=${seed})`);
    const random = seededRandom(seed);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)] as T;
    const frame = (): { buckets: unknown[]; rows: unknown[][] } => ({
      buckets: Array.from({ length: Math.floor(random() * 4) }, () => Math.floor(random() * 1024)),
      rows: Array.from({ length: Math.floor(random() * 5) }, () => [
        Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(['1', 'a "b"', 'é', '', '\\', '[1,2]', '\t'])),
        String(Math.floor(random() * 1e9)),
      ]),
    });
    let accepted = 0;
    for (let i = 0; i < 1000; i++) {
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
      // The frame as a file holds it: JSON text (undefined becomes null in arrays, goes from objects).
      const text = JSON.stringify(value) ?? 'null';
      const expected = bundleKeysSchema.safeParse(JSON.parse(text)).success;
      expect(await bundles.checkKeySet(text), text).toBe(expected ? 'ok' : 'invalid');
      if (expected) accepted++;
    }
    // Both verdicts were met many times.
    expect(accepted).toBeGreaterThan(100);
    expect(accepted).toBeLessThan(900);
  });

  it('refuses what JavaScript reads but the import cannot: buckets not written as plain integers, U+0000, lone surrogates', async () => {
    await using db = await createDatabase('local');
    const bundles = new PgBundleStore(db.pool);
    const cases: [string, 'ok' | 'not json' | 'invalid'][] = [
      ['{"buckets": [1, 2], "rows": [[["a"], "9223372036854775807"]], "more": 1}', 'ok'],
      ['{"buckets": [1.0], "rows": []}', 'invalid'],
      // jsonb keeps 1e3 as 1000, which the import reads as an int; 1.0 keeps its scale and does not cast.
      ['{"buckets": [1e3], "rows": []}', 'ok'],
      ['{"buckets": [12345678901], "rows": []}', 'invalid'],
      ['{"buckets": [], "rows": [[["a"], "9223372036854775808"]]}', 'invalid'],
      ['{"buckets": [], "rows": [[["\\u0000"], "1"]]}', 'not json'],
      ['{"buckets": [], "rows": [[["\\ud800"], "1"]]}', 'not json'],
      ['{"buckets": [], "rows": [', 'not json'],
      ['', 'not json'],
    ];
    for (const [text, verdict] of cases) {
      expect(await bundles.checkKeySet(text), text).toBe(verdict);
    }
    // JavaScript's JSON and the schema accept both of these, which the import could not read.
    expect(bundleKeysSchema.safeParse(JSON.parse('{"buckets": [1.0], "rows": [[["\\u0000"], "1"]]}')).success).toBe(true);
  });
});
