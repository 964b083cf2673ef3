/**
 * Small uploads without a staging table (docs/scaling.md, Small uploads). An upload stages its
 * rows in a temporary table for the upsert; creating and dropping one writes and deletes a dozen
 * catalog rows, which for the 20 changed rows of a busy table's run costs more than the rows. A body
 * of at most SMALL_BODY_BYTES is parsed here instead and given to the same statements as one text
 * array per column, each value cast to the replica column's type: the type's input function, as
 * COPY applies it, so the values stored are the same.
 *
 * The parser takes the plain case only: lines ending in `\n`, fields separated by tabs, `\N` for
 * null, COPY text's backslash escapes, valid UTF-8 without NUL, the expected number of fields.
 * Anything else (a carriage return, a malformed escape, a wrong field count) returns null and the
 * body goes through COPY, whose error is the answer, exactly as before.
 */
import { ident } from '../shared/pg.js';
import type { ColumnSpec } from '../shared/protocol.js';

/** Bodies up to this many bytes (as sent, uncompressed) are parsed here. */
export const SMALL_BODY_BYTES = 64 * 1024;

const decoder = new TextDecoder('utf-8', { fatal: true });

const SIMPLE_ESCAPES: Record<number, number> = {
  98: 0x08, // \b
  102: 0x0c, // \f
  110: 0x0a, // \n
  114: 0x0d, // \r
  116: 0x09, // \t
  118: 0x0b, // \v
};

function isOctal(c: number | undefined): c is number {
  return c !== undefined && c >= 0x30 && c <= 0x37;
}

function hexValue(c: number | undefined): number {
  if (c === undefined) return -1;
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** One field's bytes (escapes still in), de-escaped and decoded; null for `\N`; undefined when not the plain case. */
function field(body: Buffer, start: number, end: number): string | null | undefined {
  if (end - start === 2 && body[start] === 0x5c && body[start + 1] === 0x4e) return null;
  if (body.indexOf(0x5c, start) === -1 || body.indexOf(0x5c, start) >= end) return decodeText(body.subarray(start, end));
  const out = Buffer.allocUnsafe(end - start);
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = body[i] as number;
    if (c !== 0x5c) {
      out[n++] = c;
      continue;
    }
    const e = body[++i];
    if (e === undefined || i >= end) return undefined; // a backslash ending the field
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) out[n++] = simple;
    else if (isOctal(e)) {
      let v = e - 0x30;
      for (let k = 0; k < 2 && i + 1 < end && isOctal(body[i + 1]); k++) v = v * 8 + ((body[++i] as number) - 0x30);
      out[n++] = v & 0xff;
    } else if (e === 0x78 && hexValue(body[i + 1]) >= 0 && i + 1 < end) {
      let v = hexValue(body[++i]);
      if (i + 1 < end && hexValue(body[i + 1]) >= 0) v = v * 16 + hexValue(body[++i]);
      out[n++] = v;
    } else out[n++] = e; // any other character stands for itself (\\ is a backslash)
  }
  return decodeText(out.subarray(0, n));
}

function decodeText(bytes: Uint8Array): string | undefined {
  if (bytes.indexOf(0) !== -1) return undefined;
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

/**
 * The body's values, one array per column (wire order), or null when the body is not the plain
 * case (COPY then takes it). `columns` is the number of fields every line must have.
 */
export function parseCopyText(body: Buffer, columns: number): (string | null)[][] | null {
  if (body.indexOf(0x0d) !== -1) return null;
  const out: (string | null)[][] = Array.from({ length: columns }, () => []);
  let line = 0;
  while (line < body.length) {
    let eol = body.indexOf(0x0a, line);
    if (eol === -1) eol = body.length;
    let start = line;
    for (let col = 0; col < columns; col++) {
      let end = body.indexOf(0x09, start);
      if (end === -1 || end > eol) end = eol;
      const last = col === columns - 1;
      if (last ? end !== eol : end === eol) return null; // too many or too few fields
      const value = field(body, start, end);
      if (value === undefined) return null;
      (out[col] as (string | null)[]).push(value);
      start = end + 1;
    }
    line = eol + 1;
  }
  return out;
}

/**
 * The staged rows as a CTE named `tidemark_stage`, for statements written against the staging
 * table: `with tidemark_stage as (...)` over `unnest` of one text array per column, parameters
 * from `$firstParam` on. Types come from the replica's columns (whitelisted at declaration).
 */
export function inlineStage(columns: ColumnSpec[], values: (string | null)[][], firstParam: number): { cte: string; params: unknown[] } {
  const aliases = columns.map((_, i) => `c${i}`);
  const arrays = columns.map((_, i) => `$${firstParam + i}::text[]`);
  const casts = columns.map((c, i) => `s.${aliases[i]}::${c.type} as ${ident(c.name)}`);
  return {
    cte: /* sql */ `with tidemark_stage as materialized (select ${casts.join(', ')} from unnest(${arrays.join(', ')}) as s(${aliases.join(', ')}))`,
    params: values,
  };
}
