/**
 * The wire schemas refuse, before any work, what a hostile or broken client can send (issue 14,
 * items 1, 6 and 8): each case here was a 500 or an unbounded answer when it reached the server.
 */
import { describe, expect, it } from 'vitest';
import type { z } from 'zod';

import { isSafeTypeName } from '../../src/shared/pg.js';
import {
  deleteRequestSchema,
  MAX_BUCKET_BITS,
  MAX_BUCKETS_PER_REQUEST,
  manifestRequestSchema,
  parseDatabaseId,
  parseMessage,
  parseTableName,
  tableDeclarationSchema,
  tableSummarySchema,
  typeNameProblem,
  uploadQuerySchema,
} from '../../src/shared/protocol.js';

const RANGE = { lower: null, upper: null };
const TOO_BIG = '9223372036854775808'; // 2^63
const MAX = '9223372036854775807'; // 2^63 - 1

function problems(schema: z.ZodType, value: unknown): string {
  const r = schema.safeParse(value);
  return r.success ? '' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
}

describe('manifest requests are bounded before any work', () => {
  it('refuses the amplification request: a coarse bucket listed 32 times under 2^20 fine buckets', () => {
    const attack = { mode: 'hash', range: RANGE, level: 'buckets', bucketBits: 20, within: { bits: 0, buckets: Array(32).fill(0) } };
    expect(problems(manifestRequestSchema, attack)).toMatch(/within\.buckets: each bucket may be listed once/);
    // Parsed by the server's parse helper: a 400 naming the limit.
    expect(() => parseMessage(manifestRequestSchema, attack, 'manifest request')).toThrow(
      expect.objectContaining({ status: 400, code: 'TM_REQUEST_INVALID', message: expect.stringMatching(/listed once/) }),
    );
  });

  it('bounds bucket bits, bucket numbers and list lengths, and keeps each option to its level', () => {
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'buckets', bucketBits: MAX_BUCKET_BITS + 1 })).toMatch(/bucketBits/);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'buckets' })).toMatch(/bucketBits is required/);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'buckets', bucketBits: 4, within: { bits: 5, buckets: [0] } })).toMatch(
      /within\.bits must not exceed bucketBits/,
    );
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'buckets', bucketBits: 8, within: { bits: 2, buckets: [4] } })).toMatch(
      /below 2\^within\.bits/,
    );
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'rows', bucketBits: 2, buckets: [4] })).toMatch(/below 2\^bucketBits/);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'rows', bucketBits: 2, buckets: [1, 1] })).toMatch(/listed once/);
    const many = Array.from({ length: MAX_BUCKETS_PER_REQUEST + 1 }, (_, i) => i);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'rows', bucketBits: 20, buckets: many })).toMatch(/MAX_BUCKETS_PER_REQUEST/);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'summary', buckets: [0] })).toMatch(/for level rows only/);
    expect(problems(manifestRequestSchema, { mode: 'hash', range: RANGE, level: 'rows', bucketBits: 2, within: { bits: 1, buckets: [0] } })).toMatch(
      /for level buckets only/,
    );
  });

  it('accepts what the agent sends: coarse, fine within coarse, rows of fine buckets', () => {
    for (const ok of [
      { mode: 'hash', range: RANGE, level: 'summary' },
      { mode: 'count', range: RANGE, level: 'buckets', bucketBits: 10, hashKind: 'record' },
      { mode: 'hash', range: RANGE, level: 'buckets', bucketBits: 20, within: { bits: 10, buckets: Array.from({ length: 1024 }, (_, i) => i) } },
      { mode: 'hash', range: RANGE, level: 'rows', bucketBits: 20, buckets: [0, 5, 1_048_575] },
    ])
      expect(problems(manifestRequestSchema, ok)).toBe('');
  });

  it('gives range bounds one value per key column', () => {
    const range = { lower: { version: '1', key: ['a'] }, upper: { version: '2', key: ['a', 'b'] } };
    expect(problems(manifestRequestSchema, { mode: 'hash', range, level: 'summary' })).toMatch(/same number of key values/);
  });
});

describe('versions are decimal strings within 0..2^63-1 everywhere', () => {
  it('in settle query parameters, deletes, range bounds and summaries', () => {
    expect(problems(uploadQuerySchema, { settledVersion: MAX, settledXmax: MAX, settledXip: `1,${MAX}` })).toBe('');
    expect(problems(uploadQuerySchema, { settledVersion: TOO_BIG })).toMatch(/settledVersion: must be a decimal integer from 0 to 9223372036854775807/);
    expect(problems(uploadQuerySchema, { settledXmax: '99999999999999999999' })).toMatch(/settledXmax/);
    expect(problems(uploadQuerySchema, { settledXip: `1,${TOO_BIG}` })).toMatch(/settledXip/);
    expect(problems(uploadQuerySchema, { settledVersion: '-1' })).toMatch(/settledVersion/);
    expect(problems(uploadQuerySchema, { settledVersion: '1e3' })).toMatch(/settledVersion/);
    expect(problems(deleteRequestSchema, { aboveVersion: TOO_BIG })).not.toBe('');
    expect(problems(deleteRequestSchema, { keys: [{ key: ['1'], version: TOO_BIG }] })).not.toBe('');
    expect(problems(deleteRequestSchema, { keys: [{ key: ['1'], version: MAX }] })).toBe('');
    expect(problems(manifestRequestSchema, { mode: 'hash', range: { lower: { version: TOO_BIG, key: null }, upper: null }, level: 'summary' })).toMatch(
      /range\.lower\.version/,
    );
    expect(problems(tableSummarySchema.shape.settledVersion, TOO_BIG)).not.toBe('');
  });

  it('and key values hold no NUL', () => {
    expect(problems(deleteRequestSchema, { keys: [{ key: ['a\0b'], version: '1' }] })).toMatch(/NUL/);
  });
});

describe('names and types are what PostgreSQL can hold', () => {
  const declaration = (columns: { name: string; type: string; notNull: boolean }[], keyColumns = ['id']) => ({
    columns: [{ name: 'tidemark_version', type: 'bigint', notNull: true }, { name: 'id', type: 'integer', notNull: true }, ...columns],
    keyColumns,
  });

  it('refuses table names with NUL or a part longer than 63 bytes, as TM_TABLE_NAME_INVALID 400', () => {
    expect(() => parseTableName('public."a\0b"')).toThrow(
      expect.objectContaining({ status: 400, code: 'TM_TABLE_NAME_INVALID', message: expect.stringMatching(/NUL/) }),
    );
    expect(() => parseTableName(`public.${'a'.repeat(64)}`)).toThrow(/longer than 63 bytes/);
    expect(() => parseTableName(`"${'é'.repeat(32)}".t`)).toThrow(/longer than 63 bytes/); // 64 bytes in 32 characters
    expect(parseTableName(`public.${'a'.repeat(63)}`).name).toHaveLength(63);
  });

  it('refuses column names PostgreSQL reserves or cannot hold', () => {
    for (const name of ['xmin', 'xmax', 'cmin', 'cmax', 'ctid', 'tableoid', 'oid'])
      expect(problems(tableDeclarationSchema, declaration([{ name, type: 'text', notNull: false }])), name).toMatch(/system column/);
    expect(problems(tableDeclarationSchema, declaration([{ name: 'a\0', type: 'text', notNull: false }]))).toMatch(/NUL/);
    expect(problems(tableDeclarationSchema, declaration([{ name: 'c'.repeat(64), type: 'text', notNull: false }]))).toMatch(/longer than 63 bytes/);
    expect(problems(tableDeclarationSchema, declaration([{ name: 'tidemark_client_id', type: 'text', notNull: false }]))).toMatch(/reserved/);
    expect(problems(tableDeclarationSchema, declaration([{ name: 'id', type: 'text', notNull: false }]))).toMatch(/duplicate column id/);
    expect(problems(tableDeclarationSchema, declaration([], ['name']))).toMatch(/key columns must follow/);
    expect(problems(tableDeclarationSchema, declaration([{ name: 'Näme 2', type: 'text', notNull: false }]))).toBe('');
  });

  it('refuses clauses and out-of-range type modifiers in column types', () => {
    for (const bad of [
      'text default 1',
      'integer generated always as (1) stored',
      'character varying(99999999)',
      'varchar(0)',
      'numeric(1001)',
      'numeric(10,1001)',
      'timestamp(7) with time zone',
      'integer(5)',
      'text collate "C"',
      'text not null',
      'int references t',
      'some_extension_type(99999999)',
    ]) {
      expect(typeNameProblem(bad), bad).not.toBeNull();
      expect(isSafeTypeName(bad), bad).toBe(false);
      expect(problems(tableDeclarationSchema, declaration([{ name: 'c', type: bad, notNull: false }])), bad).toMatch(/type/);
    }
    for (const ok of [
      'character varying(10485760)',
      'numeric(1000,-1000)',
      'timestamp(6) without time zone',
      'time(3) with time zone',
      'interval day to second(3)',
      'bit varying(5)[]',
      'double precision[][]',
      'public.vector(1536)',
      'pg_catalog.numeric(10,2)',
    ])
      expect(typeNameProblem(ok), ok).toBeNull();
  });
});

describe('database ids have one canonical form', () => {
  it('is lower case, whatever case a path or flag used', () => {
    expect(parseDatabaseId('6F1C1F3E-8D3B-4F6E-9A43-2B7D1C0E5A10')).toBe('6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10');
    expect(parseDatabaseId('6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10')).toBe('6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10');
    expect(() => parseDatabaseId('6f1c1f3e8d3b4f6e9a432b7d1c0e5a10')).toThrow(expect.objectContaining({ status: 400, code: 'TM_REQUEST_INVALID' }));
  });
});
