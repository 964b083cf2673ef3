/**
 * How a tenant's declaration changes the shared replica table (issue 8 item 1, issue 14 item 2):
 * a pure plan from the tenant's previous shape, the replica's union of shapes and the admitted key.
 * The replica only ever grows or widens; anything else is refused for this tenant alone, with
 * reasons that speak only of the tenant's own declaration (never of what other tenants declare).
 */
import { createHash } from 'node:crypto';

import { joinTypes, widens } from '../shared/column-widening.js';
import { type ColumnSpec, formatTableName, type TableDeclaration, type TableName, VERSION_COLUMN } from '../shared/protocol.js';

/** What a declaration does to the replica and to the tenant's rows (applied in one transaction). */
export interface EvolutionPlan {
  /** Columns the replica gains: nullable, no default (a catalog change, no rewrite). */
  addColumns: ColumnSpec[];
  /** Replica columns widened to a type holding every tenant's values (int to bigint rewrites the table). */
  alterTypes: { name: string; type: string }[];
  /** Replica columns some tenant does not declare: they must admit NULL. */
  dropNotNull: string[];
  /** Columns this tenant added with a constant default: its existing rows get that value. */
  setDefaults: { name: string; type: string; value: string }[];
  /** Columns this tenant dropped: its rows stop carrying them (NULL). */
  nullColumns: string[];
  /** The replica's columns after the plan (version, key, then the others in order of arrival). */
  union: ColumnSpec[];
}

/** The declaration as stored and hashed: without the one-off `addedDefault` values. */
export function storedDeclaration(d: TableDeclaration): TableDeclaration {
  return { columns: d.columns.map(({ addedDefault: _, ...c }) => c), keyColumns: d.keyColumns };
}

/** A declaration's identity: equal hashes, nothing to evolve (the idle run's one indexed read). */
export function declarationHash(d: TableDeclaration): string {
  return createHash('sha256')
    .update(JSON.stringify(storedDeclaration(d)))
    .digest('hex');
}

const sameCollation = (a: ColumnSpec, b: ColumnSpec): boolean =>
  (a.collation?.schema ?? null) === (b.collation?.schema ?? null) && (a.collation?.name ?? null) === (b.collation?.name ?? null);

function describeColumn(c: ColumnSpec): string {
  return `${c.name} ${c.type}${c.collation ? ` collate ${c.collation.schema}.${c.collation.name}` : ''}`;
}

/** The key columns of a declaration (with their types and collations), in key order. */
export function keyColumnsOf(d: TableDeclaration): ColumnSpec[] {
  return d.columns.slice(1, 1 + d.keyColumns.length).map(({ addedDefault: _, ...c }) => ({ ...c, notNull: true }));
}

function sameKey(a: readonly ColumnSpec[], b: readonly ColumnSpec[]): boolean {
  return a.length === b.length && a.every((c, i) => b[i]?.name === c.name && b[i]?.type === c.type && sameCollation(c, b[i] as ColumnSpec));
}

/**
 * Refuses a key other than the admitted one; null when it is the admitted key. `previous` tells a
 * key that changed locally from a table that never had the admitted key.
 */
export function keyRefusal(table: TableName, want: TableDeclaration, admitted: readonly ColumnSpec[], previous: TableDeclaration | null): string | null {
  const key = keyColumnsOf(want);
  if (sameKey(key, admitted)) return null;
  const label = formatTableName(table);
  const yours = `(${key.map(describeColumn).join(', ')})`;
  if (previous && sameKey(keyColumnsOf(previous), admitted))
    return `the primary key of ${label} changed locally to ${yours}; the replica keeps this database's rows under the former key, and this table stops syncing until: the former key is restored locally, or the admin admits the new key (tidemark admit-table ${label} --key "<column> <type>"), which re-keys the replica`;
  return `the primary key declared for ${label}, ${yours}, is not the key this server admits for that table; this table does not sync from this database until it declares the admitted key (ask the server's admin), or the admin admits this key (tidemark admit-table ${label} --key "<column> <type>")`;
}

/**
 * Plans a declaration against the replica's union (`union`) and the tenant's previous shape;
 * returns the refusals instead when the declaration cannot join (narrowing, incompatible type or
 * collation), each naming only the tenant's own column.
 */
export function planEvolution(want: TableDeclaration, union: readonly ColumnSpec[], previous: TableDeclaration | null): EvolutionPlan | { refusals: string[] } {
  const refusals: string[] = [];
  const byName = new Map(union.map((c) => [c.name, { ...c }]));
  const order = union.map((c) => c.name);
  const prev = new Map((previous?.columns ?? []).map((c) => [c.name, c]));
  const plan: EvolutionPlan = { addColumns: [], alterTypes: [], dropNotNull: [], setDefaults: [], nullColumns: [], union: [] };
  const keys = new Set(want.keyColumns);
  for (const c of want.columns) {
    if (c.name === VERSION_COLUMN || keys.has(c.name)) continue;
    const before = prev.get(c.name);
    if (before && before.type !== c.type && !widens(before.type, c.type)) {
      refusals.push(
        `column ${c.name} changed from ${before.type} to ${c.type}, which is not a widening (narrower, or another kind of type); the replica cannot follow it: restore ${before.type} locally, or widen it instead`,
      );
      continue;
    }
    if (before && !sameCollation(before, c)) {
      refusals.push(`column ${c.name} changed its collation; the replica cannot follow it: restore the former collation locally`);
      continue;
    }
    const u = byName.get(c.name);
    if (!u) {
      const added: ColumnSpec = { name: c.name, type: c.type, notNull: false, ...(c.collation ? { collation: c.collation } : {}) };
      plan.addColumns.push(added);
      byName.set(c.name, added);
      order.push(c.name);
    } else {
      const joined = joinTypes(u.type, c.type);
      if (joined === null || !sameCollation(u, c)) {
        refusals.push(
          `column ${describeColumn(c)} cannot be stored in the shared replica table ${joined === null ? '(its type cannot be widened to hold it)' : '(its collation)'}: rename the column locally, or ask the server's admin`,
        );
        continue;
      }
      if (joined !== u.type) {
        plan.alterTypes.push({ name: c.name, type: joined });
        u.type = joined;
      }
    }
    if (!before && previous !== null && c.addedDefault !== undefined) plan.setDefaults.push({ name: c.name, type: c.type, value: c.addedDefault });
  }
  if (refusals.length) return { refusals };
  const declared = new Set(want.columns.map((c) => c.name));
  for (const c of previous?.columns ?? []) if (!declared.has(c.name) && !keys.has(c.name) && byName.has(c.name)) plan.nullColumns.push(c.name);
  for (const name of order) {
    const c = byName.get(name) as ColumnSpec;
    if (c.notNull && !declared.has(name) && name !== VERSION_COLUMN && !keys.has(name)) {
      plan.dropNotNull.push(name);
      c.notNull = false;
    }
    plan.union.push(c);
  }
  return plan;
}

/** Whether a plan changes the replica itself (DDL), not only rows or the catalog. */
export function changesReplica(plan: EvolutionPlan): boolean {
  return plan.addColumns.length + plan.alterTypes.length + plan.dropNotNull.length > 0;
}
