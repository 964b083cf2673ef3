/**
 * Names on the wire: a table's identity (`schema.table`, quoted where needed) and column names,
 * checked against what PostgreSQL can hold (no NUL, at most 63 bytes a part) before they reach SQL.
 */
import { z } from 'zod';

import { ErrorCode, ProtocolError } from '../errors.js';
import { MAX_IDENTIFIER_BYTES } from './limits.js';

/** A table's identity: its schema and name, exactly as in pg_catalog. */
export interface TableName {
  schema: string;
  name: string;
}

/**
 * What is wrong with a name part (schema, table or column), or null. PostgreSQL truncates longer
 * names to 63 bytes (two long names would then meet) and cannot store NUL.
 */
export function identifierProblem(part: string): string | null {
  if (part.length === 0) return 'is empty';
  if (part.includes('\0')) return 'contains a NUL character';
  if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) return `is longer than ${MAX_IDENTIFIER_BYTES} bytes`;
  return null;
}

/** PostgreSQL's system column names: a user column cannot be named like one. */
export const SYSTEM_COLUMNS: ReadonlySet<string> = new Set(['xmin', 'xmax', 'cmin', 'cmax', 'ctid', 'tableoid', 'oid']);

/** A column name a replica table can have: a valid identifier, not a system column's name. */
export const columnNameSchema = z.string().superRefine((name, ctx) => {
  const problem = identifierProblem(name);
  if (problem) ctx.addIssue({ code: 'custom', message: `column name ${JSON.stringify(name)} ${problem}` });
  else if (SYSTEM_COLUMNS.has(name)) ctx.addIssue({ code: 'custom', message: `column name ${name} is a PostgreSQL system column name` });
});

function quoteIfNeeded(part: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(part) ? part : `"${part.replaceAll('"', '""')}"`;
}

/** `public.items`, `"Wé""ird"."a.b"`: the text form used in config, CLI output and URLs. */
export function formatTableName(t: TableName): string {
  return `${quoteIfNeeded(t.schema)}.${quoteIfNeeded(t.name)}`;
}

/**
 * Parses `schema.table` (either part double-quoted when needed). Unquoted parts are folded to
 * lower case as PostgreSQL does. A bare `table` gets `defaultSchema`. Each part must be a valid
 * identifier (`identifierProblem`): 400 `TM_TABLE_NAME_INVALID` otherwise.
 */
export function parseTableName(text: string, defaultSchema = 'public'): TableName {
  const fail = (why = 'use schema.table'): never => {
    throw new ProtocolError(ErrorCode.TABLE_NAME_INVALID, 400, `invalid table name ${JSON.stringify(text)}: ${why}`);
  };
  const parts: string[] = [];
  let i = 0;
  while (i <= text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) fail();
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
    } else {
      const start = i;
      while (i < text.length && text[i] !== '.' && text[i] !== '"') i++;
      part = text.slice(start, i).toLowerCase();
      if (part.length === 0 || /\s/.test(part)) fail();
    }
    if (part.length === 0) fail();
    parts.push(part);
    if (i === text.length) break;
    if (text[i] !== '.') fail();
    i++;
    if (i === text.length) fail();
  }
  if (parts.length === 1) parts.unshift(defaultSchema);
  if (parts.length !== 2) fail();
  for (const part of parts) {
    const problem = identifierProblem(part);
    if (problem) fail(`${JSON.stringify(part)} ${problem}`);
  }
  return { schema: parts[0] as string, name: parts[1] as string };
}

/** A table name in its text form, parsed (for lists in requests and config). */
export const tableNameSchema = z.string().transform((text, ctx) => {
  try {
    return parseTableName(text);
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});
