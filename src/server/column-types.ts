/**
 * Which column types a tenant may declare. A type resolves (by the server role's search path)
 * against an allow-list of families, never against arbitrary relations:
 *  - built-in base, range and multirange types of pg_catalog, and arrays of them, except the
 *    system types (reg*, pg_*, xid/cid/tid, aclitem, …) that name or reach into the catalog;
 *  - enums, domains and types of extensions only when the admin admits them by name
 *    (server config `admittedTypes`, e.g. `public.citext`);
 *  - never a composite (the row type of a table such as tidemark.tenant_database or pg_authid),
 *    a pseudo-type, or anything else.
 */
import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import type { ColumnSpec } from '../shared/protocol.js';

/** pg_catalog types that are about the catalog or the server itself, not about data. */
const SYSTEM_TYPES = /^(reg.*|pg_.*|aclitem|cid|xid|xid8|tid|txid_snapshot|int2vector|oidvector|gtsvector|refcursor)$/;

interface ResolvedType {
  nspname: string;
  typname: string;
  typtype: string;
}

function refused(c: ColumnSpec, why: string): ProtocolError {
  return new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `column ${c.name} has type ${c.type}, ${why}`);
}

/** Resolves every declared column type and refuses those outside the allow-list (400 naming the column). */
export async function checkColumnTypes(client: pg.ClientBase, columns: readonly ColumnSpec[], admittedTypes: ReadonlySet<string>): Promise<void> {
  for (const c of columns) {
    // The element type for arrays: an array is allowed when its element is.
    const { rows } = await client.query<ResolvedType>(
      /* sql */ `
      select n.nspname, b.typname, b.typtype
        from pg_type t
        join pg_type b on b.oid = case when t.typcategory = 'A' and t.typelem <> 0 then t.typelem else t.oid end
        join pg_namespace n on n.oid = b.typnamespace
       where t.oid = to_regtype($1::text)`,
      [c.type],
    );
    const t = rows[0];
    if (!t)
      throw refused(
        c,
        'which the server database does not know: create it there as it is defined locally (an extension type such as citext or hstore: create extension; an enum or a domain: the same create type or create domain), have the admin admit it (admittedTypes), then the next run declares the table again',
      );
    const name = `${t.nspname}.${t.typname}`;
    if (admittedTypes.has(name) && t.typtype !== 'c' && t.typtype !== 'p') continue;
    if (t.nspname !== 'pg_catalog') throw refused(c, `which is not admitted on this server: the admin can admit ${name} in the server's admittedTypes`);
    if (!['b', 'r', 'm'].includes(t.typtype) || SYSTEM_TYPES.test(t.typname)) throw refused(c, 'which is a system or catalog type; it cannot be replicated');
  }
}
