/**
 * The canonical shape of a replicated row and the SQL both sides build from it: the (version, key)
 * order, range predicates and the row hash. Agent and server run the same expressions, so equal rows
 * hash equally and ranges mean the same rows on both sides.
 */

import { ErrorCode, InvariantError, ProtocolError } from './errors.js';
import { ident, identList, type SqlIdent, type SqlType, sqlType } from './pg.js';
import type { Bound, ColumnSpec, HashKind, KeyRange, ManifestMode, ManifestRequest, ManifestResponse } from './protocol.js';
import { MAX_BUCKET_BITS, VERSION_COLUMN } from './protocol.js';

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
  if (!col) throw new InvariantError(`column ${name} is not in the shape`);
  return sqlType(col.type);
}

/**
 * Checks that a key from a request (a range bound, a delete) has one value per key column: a
 * client's mistake the schema cannot see (it does not know the table), so a 400 before any SQL runs.
 */
export function assertKeyArity(shape: RowShape, key: readonly string[], what: string): void {
  if (key.length !== shape.keyColumns.length)
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `${what} has ${key.length} key value(s); the table's key has ${shape.keyColumns.length} column(s)`);
}

function boundSql(shape: RowShape, bound: Bound, op: '>=' | '>' | '<', bind: ParamBinder): string {
  const v = bind(bound.version, 'bigint' as SqlType);
  if (bound.key === null) return `${ident(VERSION_COLUMN)} ${op} ${v}`;
  assertKeyArity(shape, bound.key, 'a range bound');
  const keys = shape.keyColumns.map((k, i) => bind(bound.key?.[i] as string, columnType(shape, k)));
  // The plain bound on the version beside the row comparison lets PostgreSQL 17 and older stop the
  // index scan there too (they use a row comparison to start a scan, not always to end it).
  const plain = `${ident(VERSION_COLUMN)} ${op === '<' ? '<=' : '>='} ${v}`;
  return `${plain} and (${orderSql(shape)}) ${op} (${[v, ...keys].join(', ')})`;
}

/** The SQL condition selecting the rows of a range, or `true`. */
export function rangeSql(shape: RowShape, range: KeyRange, bind: ParamBinder): string {
  const parts: string[] = [];
  if (range.lower) parts.push(boundSql(shape, range.lower, range.lowerExclusive ? '>' : '>=', bind));
  if (range.upper) parts.push(boundSql(shape, range.upper, '<', bind));
  // Both bounds in one version (rows from before tracking all have version 0): bound the first key
  // column plainly too, for the same reason.
  const lk = range.lower?.key;
  const uk = range.upper?.key;
  const first = shape.keyColumns[0];
  if (lk && uk && first && range.lower?.version === range.upper?.version) {
    const type = columnType(shape, first);
    parts.push(`${keyColumnSql(shape, first)} >= ${bind(lk[0] as string, type)} and ${keyColumnSql(shape, first)} <= ${bind(uk[0] as string, type)}`);
  }
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

/**
 * Sum of row hashes modulo 2^64 as decimal text; order-independent, so ranges compare in one pass.
 * `sum(bigint)` accumulates exactly (in 128 bits) without a numeric per row.
 */
export function hashSumSql(hashExpr: string): string {
  return `((coalesce(sum(${hashExpr}), 0) % 18446744073709551616 + 18446744073709551616) % 18446744073709551616)::text`;
}

// --- COPY text: the codec lives in protocol/copy-text.ts; re-exported here for existing importers.
export { decodeCopyField, leadingCopyFields } from './protocol/copy-text.js';

// --- Manifests (both sides run exactly this) --------------------------------------------------

export interface SqlQuery {
  text: string;
  values: unknown[];
}

/**
 * A row's hash in a mode: `hash` covers its content, `count` only its key and version (identity).
 * `record` hashes columns with their types' hash functions; `text` hashes the canonical text.
 */
export function modeHashSql(shape: RowShape, mode: ManifestMode, kind: HashKind = 'text'): string {
  if (mode === 'hash') return kind === 'record' ? `hash_record_extended(row(${columnListSql(shape)}), 0)` : rowHashSql(shape);
  const identity = `row(${ident(VERSION_COLUMN)}, ${identList(shape.keyColumns)})`;
  return kind === 'record' ? `hash_record_extended(${identity}, 0)` : `hashtextextended(${identity}::text, 0)`;
}

/** A hash of a row's key (seed 1, independent of the row hash): what buckets are made of. */
export function keyHashSql(shape: RowShape, kind: HashKind = 'text'): string {
  return kind === 'record' ? `hash_record_extended(row(${identList(shape.keyColumns)}), 1)` : `hashtextextended(${keyTextSql(shape)}::text, 1)`;
}

function mask(bits: number): number {
  if (!Number.isInteger(bits) || bits < 0 || bits > MAX_BUCKET_BITS) throw new InvariantError(`bucket bits must be 0..${MAX_BUCKET_BITS}`);
  return 2 ** bits - 1;
}

/** The bucket of a row at `bits`: its key hash, masked. */
export function bucketSql(shape: RowShape, bits: number, kind: HashKind = 'text'): string {
  return `(${keyHashSql(shape, kind)} & ${mask(bits)})::int`;
}

/**
 * The SQL of one manifest request. `base` are parameters already bound (the server's tenant),
 * `where` a condition using them ('true' on the agent).
 */
export function manifestQuery(shape: RowShape, request: ManifestRequest, base: readonly unknown[], where: string): SqlQuery {
  const values = [...base];
  const kind = request.hashKind ?? 'text';
  let cond = `${where} and ${rangeSql(shape, request.range, positionalBinder(values))}`;
  const hash = modeHashSql(shape, request.mode, kind);
  const bits = request.bucketBits ?? 0;
  if (request.level === 'summary') return { text: /* sql */ `select count(*)::text as n, ${hashSumSql(hash)} as h from ${shape.table} where ${cond}`, values };
  if (request.level === 'buckets') {
    if (request.within) {
      values.push(request.within.buckets);
      cond += ` and ${bucketSql(shape, request.within.bits, kind)} = any($${values.length}::int[])`;
    }
    // OFFSET 0 keeps the hashes computed once per row, below a hash aggregate sized for the buckets.
    return {
      text: /* sql */ `select (k & ${mask(bits)})::int as b, count(*)::text as n, ${hashSumSql('h')} as h
        from (select ${keyHashSql(shape, kind)} as k, ${hash} as h from ${shape.table} where ${cond} offset 0) s group by 1`,
      values,
    };
  }
  values.push(request.buckets ?? []);
  return {
    text: /* sql */ `select ${keyTextSql(shape)} as k, ${ident(VERSION_COLUMN)}::text as v, (${hash})::text as h from ${shape.table}
      where ${cond} and ${bucketSql(shape, bits, kind)} = any($${values.length}::int[])`,
    values,
  };
}

const U64 = 2n ** 64n;

/**
 * Where each bucket's sum sits in a buckets answer. Without `within`, bucket b at slot b. With it,
 * only the fine buckets inside the listed coarse ones: for the i-th listed coarse bucket c, its
 * 2^(bits - within.bits) fine buckets c + j * 2^within.bits at slots i * 2^(bits - within.bits) + j.
 */
export function bucketLayout(
  bits: number,
  within?: { bits: number; buckets: readonly number[] },
): { slots: number; slotOf: (b: number) => number; bucketAt: (slot: number) => number } {
  if (!within || within.bits >= bits) return { slots: 2 ** bits, slotOf: (b) => b, bucketAt: (slot) => slot };
  const per = 2 ** (bits - within.bits);
  const coarseMask = 2 ** within.bits - 1;
  const index = new Map(within.buckets.map((c, i) => [c, i]));
  return {
    slots: within.buckets.length * per,
    slotOf: (b) => (index.get(b & coarseMask) ?? -1) * per + Math.floor(b / 2 ** within.bits),
    bucketAt: (slot) => (within.buckets[Math.floor(slot / per)] as number) + (slot % per) * 2 ** within.bits,
  };
}

/** Turns the rows of a manifest query into its answer (the same on both sides). */
export function manifestResponse(request: ManifestRequest, rows: readonly Record<string, unknown>[]): ManifestResponse {
  if (request.level === 'summary') {
    const r = rows[0] as { n: string; h: string } | undefined;
    return { count: Number(r?.n ?? 0), hash: r?.h ?? '0' };
  }
  if (request.level === 'buckets') {
    const layout = bucketLayout(request.bucketBits ?? 0, request.within);
    const buf = Buffer.alloc(8 * layout.slots);
    let count = 0;
    for (const r of rows as { b: number; n: string; h: string }[]) {
      buf.writeBigUInt64LE(BigInt(r.h) % U64, 8 * layout.slotOf(r.b));
      count += Number(r.n);
    }
    return { bucketHashes: buf.toString('base64'), count };
  }
  return { rows: (rows as { k: string[]; v: string; h: string }[]).map((r) => [r.k, r.v, r.h]) };
}
