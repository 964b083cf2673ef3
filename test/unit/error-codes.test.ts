import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { describeError } from '../../src/cli/common.js';
import { ErrorCode } from '../../src/shared/errors.js';
import { classifyPgError, isDataRejection, PG_ERROR_CLASSES, SqlState } from '../../src/shared/pg.js';

const ROOT = join(import.meta.dirname, '../..');

/** `TM_X` -> the JSDoc text above it in errors.ts. */
function jsdocByCode(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'src/shared/errors.ts'), 'utf8');
  const out = new Map<string, string>();
  for (const m of text.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*\n\s*[A-Z_]+: '(TM_[A-Z_]+)'/g)) {
    const doc = (m[1] ?? '')
      .split('\n')
      .map((l) => l.replace(/^\s*\*?\s?/, '').trim())
      .filter(Boolean)
      .join(' ');
    out.set(m[2] as string, doc);
  }
  return out;
}

/** `TM_X` -> its text in the README's error-code table. */
function readmeByCode(): Map<string, string> {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^\| `(TM_[A-Z_]+)` \| (.*) \|$/gm)) out.set(m[1] as string, (m[2] ?? '').trim());
  return out;
}

describe('error codes', () => {
  it('are listed in the README with the same text as their JSDoc in errors.ts', () => {
    const docs = jsdocByCode();
    const readme = readmeByCode();
    expect([...docs.keys()].sort()).toEqual(Object.values(ErrorCode).sort());
    expect([...readme.keys()].sort()).toEqual(Object.values(ErrorCode).sort());
    for (const code of Object.values(ErrorCode)) expect(readme.get(code), code).toBe(docs.get(code));
  });
});

describe('SQLSTATE classification (one table in pg.ts)', () => {
  it('retries unavailable and conflict soon, authentication rarely, and the rest not by itself', () => {
    const cases: [string | undefined, string, boolean, string][] = [
      ['08006', ErrorCode.DB_UNAVAILABLE, true, 'short'],
      ['57P01', ErrorCode.DB_UNAVAILABLE, true, 'short'],
      ['57P03', ErrorCode.DB_UNAVAILABLE, true, 'short'],
      ['ECONNREFUSED', ErrorCode.DB_UNAVAILABLE, true, 'short'],
      ['40001', ErrorCode.DB_CONFLICT, true, 'short'],
      ['40P01', ErrorCode.DB_CONFLICT, true, 'short'],
      ['28P01', ErrorCode.DB_AUTH_FAILED, true, 'long'],
      ['28000', ErrorCode.DB_AUTH_FAILED, true, 'long'],
      ['42P01', ErrorCode.SOURCE_TABLE_MISSING, false, 'none'],
      ['22P02', ErrorCode.DB_ERROR, false, 'none'],
      ['42883', ErrorCode.DB_ERROR, false, 'none'],
      [undefined, ErrorCode.DB_ERROR, false, 'none'],
    ];
    for (const [sqlstate, code, retryable, backoff] of cases)
      expect(classifyPgError(sqlstate === undefined ? new Error('x') : { code: sqlstate }), String(sqlstate)).toMatchObject({
        code,
        retryable,
        backoff,
        sqlstate,
      });
  });

  it('marks the rows as at fault for data, integrity and size errors only', () => {
    for (const s of ['22001', '22P02', '23502', SqlState.UNIQUE_VIOLATION, SqlState.CARDINALITY_VIOLATION, SqlState.PROGRAM_LIMIT_EXCEEDED])
      expect(isDataRejection(s), s).toBe(true);
    for (const s of ['40001', '42P01', '08006', undefined]) expect(isDataRejection(s), String(s)).toBe(false);
  });

  it('lists retryable classes with a backoff, and the others without', () => {
    for (const rule of PG_ERROR_CLASSES) expect(rule.backoff === 'none', rule.class).toBe(!rule.retryable);
  });
});

describe('one-line CLI errors', () => {
  it('keep the TM_* code of a raw database error', () => {
    const auth = Object.assign(new Error('password authentication failed for user "erp"'), { code: '28P01' });
    expect(describeError(auth).line).toBe('database error: password authentication failed for user "erp" [TM_DB_AUTH_FAILED] (SQLSTATE 28P01)');
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    expect(describeError(refused).line).toMatch(/\[TM_DB_UNAVAILABLE\]$/);
    expect(describeError(auth, 'local database').line).toBe(
      'local database: password authentication failed for user "erp" [TM_DB_AUTH_FAILED] (SQLSTATE 28P01)',
    );
    expect(describeError(refused, 'cloud database').line).toMatch(/^cloud database: connect ECONNREFUSED/);
  });
});
