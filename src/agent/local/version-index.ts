/**
 * The (version, key) index of a tracked table, built without blocking writes. A plain table gets
 * it with CREATE INDEX CONCURRENTLY. A partitioned table cannot (PostgreSQL refuses CONCURRENTLY on
 * a partitioned parent), so the index is made as PostgreSQL's own docs advise: an index ON ONLY the
 * parent (a catalog entry, invalid while partitions lack theirs), each partition's index built
 * concurrently and attached; the parent's index turns valid once every partition has one, and from
 * then on PostgreSQL creates it on every new or attached partition by itself. Sub-partitioned
 * partitions are handled the same way, level by level.
 */
import type pg from 'pg';

import { ErrorCode, TidemarkError } from '../../shared/errors.js';
import { ident, qualified } from '../../shared/pg.js';

/** The index tidemark owns on a relation: a name derived from the relation's, in its schema. */
export function versionIndexName(relation: string): string {
  return `${relation.slice(0, 40)}_tidemark_version_idx`;
}

interface Relation {
  oid: number;
  schema: string;
  name: string;
  kind: string;
}

/** What `ensureVersionIndex` created, so a failed `track` can take it back. */
export interface CreatedIndexes {
  /** Schema-qualified SQL names of indexes created, outermost (parent) first. */
  indexes: string[];
}

async function relation(pool: pg.Pool, oid: number): Promise<Relation> {
  const { rows } = await pool.query<Relation>(
    /* sql */ `select c.oid::int as oid, n.nspname as schema, c.relname as name, c.relkind::text as kind
       from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = $1::oid`,
    [oid],
  );
  const r = rows[0];
  if (!r) throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `relation ${oid} disappeared while its index was built`);
  return r;
}

/** The index of this name on this relation, if any, with its validity and oid. */
async function existingIndex(pool: pg.Pool, rel: Relation): Promise<{ oid: number; valid: boolean } | null> {
  const { rows } = await pool.query<{ oid: number; valid: boolean }>(
    /* sql */ `select i.indexrelid::int as oid, i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid = $1::oid and c.relname = $2::text`,
    [rel.oid, versionIndexName(rel.name)],
  );
  return rows[0] ?? null;
}

/**
 * Makes sure the relation (and, for a partitioned one, every partition) has the version index
 * `columnsSql`; returns the oid of the relation's index. Records what it created in `created`.
 */
export async function ensureVersionIndex(pool: pg.Pool, oid: number, columnsSql: string, created: CreatedIndexes): Promise<number> {
  const rel = await relation(pool, oid);
  const indexName = versionIndexName(rel.name);
  const indexSql = qualified(rel.schema, indexName);
  let index = await existingIndex(pool, rel);
  if (rel.kind !== 'p') {
    if (index?.valid) return index.oid;
    // An invalid one was left by an interrupted build: build it again.
    if (index) await pool.query(/* sql */ `drop index concurrently ${indexSql}`);
    await pool.query(/* sql */ `create index concurrently ${ident(indexName)} on ${qualified(rel.schema, rel.name)} (${columnsSql})`);
    created.indexes.push(indexSql);
    index = await existingIndex(pool, rel);
    if (!index) throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `index ${indexName} of ${rel.name} was not created`);
    return index.oid;
  }
  if (index?.valid) return index.oid;
  if (!index) {
    // ON ONLY: a catalog entry on the parent, no scan, no long lock.
    await pool.query(/* sql */ `create index ${ident(indexName)} on only ${qualified(rel.schema, rel.name)} (${columnsSql})`);
    created.indexes.push(indexSql);
    index = await existingIndex(pool, rel);
    if (!index) throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `index ${indexName} of ${rel.name} was not created`);
  }
  // Direct partitions whose index is not attached to this one yet (foreign tables take no index).
  const { rows: parts } = await pool.query<{ oid: number }>(
    /* sql */ `select h.inhrelid::int as oid from pg_inherits h join pg_class c on c.oid = h.inhrelid
      where h.inhparent = $1::oid and c.relkind in ('r', 'p')
        and not exists (select from pg_inherits hi join pg_index i on i.indexrelid = hi.inhrelid
                         where hi.inhparent = $2::oid and i.indrelid = h.inhrelid)
      order by 1`,
    [rel.oid, index.oid],
  );
  for (const part of parts) {
    const partIndex = await ensureVersionIndex(pool, part.oid, columnsSql, created);
    const partRel = await relation(pool, part.oid);
    const { rows } = await pool.query<{ schema: string; name: string }>(
      /* sql */ `select n.nspname as schema, c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = $1::oid`,
      [partIndex],
    );
    const pi = rows[0];
    if (!pi) throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `the version index of ${partRel.name} disappeared`);
    await pool.query(/* sql */ `alter index ${indexSql} attach partition ${qualified(pi.schema, pi.name)}`);
  }
  return index.oid;
}
