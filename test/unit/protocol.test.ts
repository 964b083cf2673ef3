import { describe, expect, it } from 'vitest';

import { bucketBits, compareRows, differingBuckets, type RowDiff } from '../../src/agent/manifest-diff.js';
import { uploadRanges } from '../../src/agent/table-sync.js';
import { ident, isSafeTypeName, qualified } from '../../src/shared/pg.js';
import { formatTableName, parseTableName, type TableSummary } from '../../src/shared/protocol.js';
import { assertKeyArity, bucketLayout, decodeCopyField, leadingCopyFields, positionalBinder, type RowShape, rangeSql } from '../../src/shared/row-shape.js';

/** A table keyed by (a text, b integer). */
const TWO_KEY_SHAPE: RowShape = {
  table: qualified('public', 't'),
  columns: [
    { name: 'tidemark_version', type: 'bigint', notNull: true },
    { name: 'a', type: 'text', notNull: true },
    { name: 'b', type: 'integer', notNull: true },
  ],
  keyColumns: ['a', 'b'],
  collatableKeys: new Set(['a']),
};

describe('table names', () => {
  it('round-trip hostile names through their text form', () => {
    for (const t of [
      { schema: 'public', name: 'items' },
      { schema: 'Wé"ird', name: 'a.b' },
      { schema: 'Other Schema', name: 'Mixed.Case' },
      { schema: 's', name: '"' },
      { schema: 'UPPER', name: 'x y' },
    ]) {
      expect(parseTableName(formatTableName(t))).toEqual(t);
    }
    expect(formatTableName({ schema: 'Wé"ird', name: 'a.b' })).toBe('"Wé""ird"."a.b"');
  });

  it('folds unquoted names to lower case and defaults the schema', () => {
    expect(parseTableName('Items')).toEqual({ schema: 'public', name: 'items' });
    expect(parseTableName('Sales.Orders')).toEqual({ schema: 'sales', name: 'orders' });
  });

  it('rejects malformed names', () => {
    for (const bad of ['', '.', 'a.', '.b', 'a.b.c', '"unterminated', 'a b', '"a"x']) expect(() => parseTableName(bad), bad).toThrow(/invalid table name/);
  });
});

describe('SQL safety', () => {
  it('quotes identifiers, each part separately, never splitting on dots', () => {
    expect(ident('a"b')).toBe('"a""b"');
    expect(qualified('Wé"ird', 'a.b')).toBe('"Wé""ird"."a.b"');
  });

  it('accepts only plain type names', () => {
    for (const ok of [
      'integer',
      'character varying(20)',
      'numeric(10,2)',
      'timestamp(3) with time zone',
      'text[]',
      'public.citext',
      'double precision',
      'bit varying(5)[]',
    ])
      expect(isSafeTypeName(ok), ok).toBe(true);
    for (const bad of ['integer); drop table x; --', '"quoted"', 'int;', 'text -- comment', "text'", 'a(1)(2)', 'int[]; select'])
      expect(isSafeTypeName(bad), bad).toBe(false);
  });

  it('builds (version, key) range predicates with parameters and byte-order collation for text keys', () => {
    const shape = TWO_KEY_SHAPE;
    const params: unknown[] = [];
    const sql = rangeSql(shape, { lower: { version: '5', key: ["x'); drop", '1'] }, upper: { version: '9', key: null } }, positionalBinder(params));
    expect(sql).toBe(
      '"tidemark_version" >= $1::bigint and ("tidemark_version", "a" collate "C", "b") >= ($1::bigint, $2::text, $3::integer) and "tidemark_version" < $4::bigint',
    );
    expect(params).toEqual(['5', "x'); drop", '1', '9']);
  });

  it('refuses a key of the wrong arity with a 400, before any SQL runs', () => {
    expect(() => assertKeyArity(TWO_KEY_SHAPE, ['x'], 'a delete key')).toThrow(
      expect.objectContaining({ status: 400, message: expect.stringMatching(/1 key value/) }),
    );
    expect(() => rangeSql(TWO_KEY_SHAPE, { lower: { version: '1', key: ['x'] }, upper: null }, positionalBinder([]))).toThrow(
      expect.objectContaining({ status: 400, code: 'TM_REQUEST_INVALID' }),
    );
  });
});

describe('COPY text', () => {
  it('decodes escapes and NULL', () => {
    expect(decodeCopyField('\\N')).toBeNull();
    expect(decodeCopyField('a\\tb\\nc\\\\d\\re')).toBe('a\tb\nc\\d\re');
    expect(decodeCopyField('\\101\\x42')).toBe('AB');
    expect(decodeCopyField('héllo')).toBe('héllo');
    expect(leadingCopyFields('7\tkey\\twith tab\trest\tmore', 2)).toEqual(['7', 'key\twith tab']);
  });
});

describe('bisection helpers', () => {
  it('sizes buckets to about the rows wanted per bucket', () => {
    expect(bucketBits(0, 8)).toBe(0);
    expect(bucketBits(8, 8)).toBe(0);
    expect(bucketBits(9, 8)).toBe(1);
    expect(bucketBits(1_000_000, 8)).toBe(17);
    expect(bucketBits(1e12, 8)).toBe(20);
  });

  it('lays out fine buckets within coarse ones compactly, and maps slots back to buckets', () => {
    const layout = bucketLayout(12, { bits: 10, buckets: [7, 1000] });
    expect(layout.slots).toBe(8);
    // Fine buckets inside coarse 7 are 7, 7 + 1024, 7 + 2048, 7 + 3072.
    expect([0, 1, 2, 3, 4, 7].map(layout.bucketAt)).toEqual([7, 1031, 2055, 3079, 1000, 4072]);
    for (let slot = 0; slot < layout.slots; slot++) expect(layout.slotOf(layout.bucketAt(slot))).toBe(slot);
    expect(bucketLayout(5).slots).toBe(32);
  });

  it('names the buckets whose hash sums differ', () => {
    const a = Buffer.alloc(32);
    const b = Buffer.alloc(32);
    a.writeBigUInt64LE(5n, 8);
    b.writeBigUInt64LE(5n, 8);
    b.writeBigUInt64LE(18446744073709551615n, 24);
    expect(differingBuckets(a.toString('base64'), b.toString('base64'))).toEqual([3]);
  });

  it('compares rows into missing, extra and changed', () => {
    const into: RowDiff = { missing: [], extra: [], changed: [] };
    compareRows(
      [
        [['1'], '10', 'h1'],
        [['2'], '10', 'h2'],
        [['3'], '11', 'h3'],
      ],
      [
        [['2'], '10', 'other'],
        [['3'], '11', 'h3'],
        [['4'], '9', 'h4'],
      ],
      into,
    );
    expect(into).toEqual({ missing: [['1']], extra: [{ key: ['4'], version: '9' }], changed: [['2']] });
  });
});

describe('upload ranges (safe horizon)', () => {
  const base: TableSummary = {
    table: 'public.t',
    rowCount: 0,
    maxVersion: null,
    settledVersion: '0',
    settledXmax: null,
    settledXip: [],
    maxModified: null,
    updatedAt: null,
    resync: null,
  };
  it('uploads everything at first', () => {
    expect(uploadRanges(base)).toEqual([{ lower: { version: '0', key: null }, upper: null }]);
  });
  it('resumes after the last row a cut-short upload applied, adding what was in progress then', () => {
    const resume = { after: { version: '150', key: ['42'] }, xip: ['140', '160'], baseline: { settledVersion: '0', settledXmax: null } };
    expect(uploadRanges(base, resume)).toEqual([
      { lower: { version: '140', key: null }, upper: { version: '141', key: null } },
      { lower: { version: '150', key: ['42'] }, lowerExclusive: true, upper: null },
    ]);
  });
  it('asks only for versions at or above the settled xmax, plus the transactions then in progress', () => {
    expect(uploadRanges({ ...base, settledVersion: '100', settledXmax: '120', settledXip: ['100', '115'] })).toEqual([
      { lower: { version: '100', key: null }, upper: { version: '101', key: null } },
      { lower: { version: '115', key: null }, upper: { version: '116', key: null } },
      { lower: { version: '120', key: null }, upper: null },
    ]);
  });
});
