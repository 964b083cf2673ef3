/**
 * The canonical shape of a replicated row and the SQL both sides build from it: the (version, key)
 * order, range predicates and the row hash. Agent and server run the same expressions, so equal rows
 * hash equally and ranges mean the same rows on both sides.
 */

import { ident, identList, type SqlIdent, type SqlType, sqlType } from './pg.js';
import type { Bound, ColumnSpec, KeyRange } from './protocol.js';
import { VERSION_COLUMN } from './protocol.js';

export interface RowShape {
  /** Qualified, quoted table name. */
  table: SqlIdent;
  /** Every column in wire order: version, key columns, others. */
  columns: readonly ColumnSpec[];
  keyColumns: readonly string[];
  /**
   * Key columns with a collation: ordered with COLLATE "C" (byte order) on both sides, because the
   * two databases may have different default collations and ranges must mean the same rows.
   */
  collatableKeys: ReadonlySet<string>;
}

/** Binds a value and returns the SQL that reads it: `$n::type`, or a staged setting for COPY. */
export type ParamBinder = (value: string, type: SqlType) => string;

export function positionalBinder(params: unknown[]): ParamBinder {
  return (value, type) => {
    params.push(value);
    return `$${params.length}::${type}`;
  };
}

export function keyColumnSql(shape: RowShape, name: string): string {
  return shape.collatableKeys.has(name) ? `${ident(name)} collate "C"` : ident(name);
}

/** `tidemark_version, "k1" collate "C", "k2"`: the order of every scan, batch and manifest. */
export function orderSql(shape: RowShape): string {
  return [ident(VERSION_COLUMN), ...shape.keyColumns.map((k) => keyColumnSql(shape, k))].join(', ');
}

export function columnListSql(shape: RowShape): SqlIdent {
  return identList(shape.columns.map((c) => c.name));
}

function columnType(shape: RowShape, name: string): SqlType {
  const col = shape.columns.find((c) => c.name === name);
  if (!col) throw new Error(`column ${name} is not in the shape`);
  return sqlType(col.type);
}

function boundSql(shape: RowShape, bound: Bound, op: '>=' | '>' | '<', bind: ParamBinder): string {
  const v = bind(bound.version, 'bigint' as SqlType);
  if (bound.key === null) return `${ident(VERSION_COLUMN)} ${op} ${v}`;
  if (bound.key.length !== shape.keyColumns.length) throw new Error('bound key has the wrong number of columns');
  const keys = shape.keyColumns.map((k, i) => bind(bound.key?.[i] as string, columnType(shape, k)));
  return `(${orderSql(shape)}) ${op} (${[v, ...keys].join(', ')})`;
}

/** The SQL condition selecting the rows of a range, or `true`. */
export function rangeSql(shape: RowShape, range: KeyRange, bind: ParamBinder): string {
  const parts: string[] = [];
  if (range.lower) parts.push(boundSql(shape, range.lower, range.lowerExclusive ? '>' : '>=', bind));
  if (range.upper) parts.push(boundSql(shape, range.upper, '<', bind));
  return parts.length ? parts.join(' and ') : 'true';
}

/** `array["k1"::text, ...]`: a row's key as text forms (under the pinned settings). */
export function keyTextSql(shape: RowShape): string {
  return `array[${shape.keyColumns.map((k) => `${ident(k)}::text`).join(', ')}]`;
}

/**
 * A row's 64-bit hash: `hashtextextended` of the row's canonical text (its record text form with the
 * columns in wire order, under the pinned settings). Computed inside PostgreSQL on both sides, so a
 * verification pass moves counts and hashes, never rows. `hashtextextended` is the function hash
 * partitioning relies on, so PostgreSQL keeps it stable across versions and platforms.
 */
export function rowHashSql(shape: RowShape): string {
  return `hashtextextended(row(${columnListSql(shape)})::text, 0)`;
}

/** Sum of row hashes modulo 2^64 as decimal text; order-independent, so ranges compare in one pass. */
export function hashSumSql(hashExpr: string): string {
  return `((coalesce(sum((${hashExpr})::numeric), 0) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616)::text`;
}

// --- COPY text ---------------------------------------------------------------------------------

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

/** Decodes one COPY text field (`\N` is null). */
export function decodeCopyField(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  let out = '';
  for (let i = 0; i < field.length; i++) {
    const c = field[i] as string;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const n = field[i + 1] ?? '';
    if (n in ESCAPES) {
      out += ESCAPES[n];
      i++;
    } else if (n === 'x' && /^[0-9a-fA-F]/.test(field[i + 2] ?? '')) {
      const hex = /^[0-9a-fA-F]{1,2}/.exec(field.slice(i + 2))?.[0] ?? '';
      out += String.fromCharCode(Number.parseInt(hex, 16));
      i += 1 + hex.length;
    } else if (/[0-7]/.test(n)) {
      const oct = /^[0-7]{1,3}/.exec(field.slice(i + 1))?.[0] ?? '';
      out += String.fromCharCode(Number.parseInt(oct, 8));
      i += oct.length;
    } else {
      out += n;
      i++;
    }
  }
  return out;
}

/** The first `n` fields of a COPY text line, decoded. */
export function leadingCopyFields(line: string, n: number): (string | null)[] {
  const out: (string | null)[] = [];
  let start = 0;
  for (let i = 0; i < n; i++) {
    let end = line.indexOf('\t', start);
    if (end === -1) end = line.length;
    out.push(decodeCopyField(line.slice(start, end)));
    start = end + 1;
  }
  return out;
}

// --- Range summaries (both sides run exactly this) ---------------------------------------------

export interface SqlQuery {
  text: string;
  values: unknown[];
}

function boundKind(b: Bound | null, exclusive: boolean): string {
  if (b === null) return 'n';
  if (b.key === null) return 'v';
  return exclusive ? 'x' : 'k';
}

/**
 * Summaries (count, and hash sum in hash mode) of many ranges, as a few set-based queries: ranges
 * are grouped by the form of their bounds, and each group is one `unnest(...) cross join lateral`
 * query whose inner scan is an index range scan on (version, key). Returns the queries and, for
 * each, the indexes of the ranges it answers (column `i` of its rows).
 *
 * `base` are parameters already bound (the server's tenant), `where` a condition using them.
 */
export function rangeSummaryQueries(shape: RowShape, ranges: readonly KeyRange[], mode: 'count' | 'hash', base: readonly unknown[], where: string): SqlQuery[] {
  const groups = new Map<string, number[]>();
  ranges.forEach((r, i) => {
    const kind = boundKind(r.lower, r.lowerExclusive === true) + boundKind(r.upper, false);
    const list = groups.get(kind);
    if (list) list.push(i);
    else groups.set(kind, [i]);
  });
  const select = mode === 'hash' ? `count(*)::text as n, ${hashSumSql(rowHashSql(shape))} as h` : `count(*)::text as n, '0' as h`;
  const queries: SqlQuery[] = [];
  for (const indexes of groups.values()) {
    const first = ranges[indexes[0] as number] as KeyRange;
    // Columns of the unnest: i, then one text[] per bound value, read back with a cast in the lateral.
    const columns: string[][] = [];
    const names: string[] = [];
    const makeBinder = (): ParamBinder => {
      let n = 0;
      return (_value, type) => {
        const name = `c${n++}`;
        if (!names.includes(name)) names.push(name);
        return `b.${name}::${type}`;
      };
    };
    // The range condition's SQL is the same for every range of a group; build it once from the first.
    const cond = rangeSql(shape, first, makeBinder());
    for (const _ of names) columns.push([]);
    for (const idx of indexes) {
      const values: string[] = [];
      rangeSql(shape, ranges[idx] as KeyRange, (value) => {
        values.push(value);
        return '';
      });
      values.forEach((v, j) => {
        columns[j]?.push(v);
      });
    }
    const values: unknown[] = [...base, indexes];
    const arrays = [`$${values.length}::int[]`];
    for (const col of columns) {
      values.push(col);
      arrays.push(`$${values.length}::text[]`);
    }
    const text = /* sql */ `select b.i, m.n, m.h from unnest(${arrays.join(', ')}) as b(i${names.map((n) => `, ${n}`).join('')})
      cross join lateral (select ${select} from ${shape.table} where ${where} and ${cond}) m`;
    queries.push({ text, values });
  }
  return queries;
}

/** Runs range summary queries with `run` and puts the answers back in range order. */
export async function summarizeRanges(
  run: (q: SqlQuery) => Promise<{ i: number; n: string; h: string }[]>,
  queries: SqlQuery[],
  rangeCount: number,
): Promise<{ count: number; hash: string }[]> {
  const out: { count: number; hash: string }[] = new Array(rangeCount);
  for (const q of queries) for (const r of await run(q)) out[r.i] = { count: Number(r.n), hash: r.h };
  return out;
}

/** The rows of a range: key text forms, version, hash ('0' in count mode), in order, at most `limit + 1`. */
export function rangeRowsQuery(shape: RowShape, range: KeyRange, mode: 'count' | 'hash', limit: number, base: readonly unknown[], where: string): SqlQuery {
  const values = [...base];
  const cond = rangeSql(shape, range, positionalBinder(values));
  const hash = mode === 'hash' ? `${rowHashSql(shape)}::text` : `'0'`;
  values.push(limit + 1);
  return {
    text: /* sql */ `select ${keyTextSql(shape)} as k, ${ident(VERSION_COLUMN)}::text as v, ${hash} as h from ${shape.table}
      where ${where} and ${cond} order by ${orderSql(shape)} limit $${values.length}::int`,
    values,
  };
}
