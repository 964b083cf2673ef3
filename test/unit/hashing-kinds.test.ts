import { describe, expect, it } from 'vitest';

import type { ColumnSpec } from '../../src/shared/protocol.js';
import { modeHashSql, type RowShape, recordHashable } from '../../src/shared/row-shape.js';

const col = (type: string): ColumnSpec => ({ name: 'c', type, notNull: false });

describe('record hashing only where a type hash is exact for canonical text', () => {
  it('accepts integers, bool, uuid, dates and times, bytea, numeric(p,s) and text types', () => {
    for (const t of [
      'smallint',
      'integer',
      'bigint',
      'boolean',
      'uuid',
      'date',
      'bytea',
      'numeric(12,2)',
      'numeric(5,-2)',
      'timestamp without time zone',
      'timestamp(3) with time zone',
      'time(6) without time zone',
      'text',
      'character varying',
      'character varying(20)',
      'character(3)',
    ])
      expect(recordHashable([col(t)]), t).toBe(true);
  });

  it('refuses types whose equal values print differently, hash by identity, or are not built in', () => {
    for (const t of [
      'numeric',
      'double precision',
      'real',
      'interval',
      'jsonb',
      'json',
      'integer[]',
      'text[]',
      'time with time zone',
      'bpchar',
      'citext',
      'public.citext',
      'mood',
      'hstore',
      'point',
    ])
      expect(recordHashable([col(t)]), t).toBe(false);
  });

  it('hashes text columns by their UTF-8 bytes, whatever their collation', () => {
    const shape: RowShape = {
      table: '"public"."t"' as RowShape['table'],
      columns: [
        { name: 'tidemark_version', type: 'bigint', notNull: true },
        { name: 'id', type: 'integer', notNull: true },
        { name: 'name', type: 'text', notNull: false, collation: { schema: 'public', name: 'ci' } },
      ],
      keyColumns: ['id'],
      collatableKeys: new Set(),
    };
    const sql = modeHashSql(shape, 'hash', 'record');
    expect(sql).toContain(`"name" collate "C"`);
    expect(sql).toContain(`convert_to("name", 'UTF8')`);
    expect(() => modeHashSql({ ...shape, columns: [...shape.columns, { name: 'n', type: 'numeric', notNull: false }] }, 'hash', 'record')).toThrow(
      /record hashing is not exact for column n of type numeric/,
    );
  });
});
