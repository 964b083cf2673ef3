/**
 * The declaration of each tracked table that the server last accepted
 * (`tidemark.accepted_declaration`): a run compares the table's current shape with it to know what
 * changed locally (schema-change.ts). Kept in the local database, so it goes back with a restore
 * as the rest of the agent's state does. Cached per process: an unchanged table costs no query.
 */
import type pg from 'pg';

import { formatTableName, type TableDeclaration, type TableName } from '../../shared/protocol.js';

export class PgDeclarationStore {
  private readonly cache = new Map<string, TableDeclaration | null>();

  constructor(private readonly pool: pg.Pool) {}

  async read(table: TableName): Promise<TableDeclaration | null> {
    const key = formatTableName(table);
    if (this.cache.has(key)) return this.cache.get(key) ?? null;
    const { rows } = await this.pool.query<{ declaration: TableDeclaration }>(
      /* sql */ `select declaration from tidemark.accepted_declaration where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const found = rows[0]?.declaration ?? null;
    this.cache.set(key, found);
    return found;
  }

  async save(table: TableName, declaration: TableDeclaration): Promise<void> {
    await this.pool.query(
      /* sql */ `insert into tidemark.accepted_declaration (schema_name, table_name, declaration) values ($1::text, $2::text, $3::jsonb)
       on conflict (schema_name, table_name) do update set declaration = excluded.declaration`,
      [table.schema, table.name, JSON.stringify(declaration)],
    );
    this.cache.set(formatTableName(table), declaration);
  }

  /** Forgets the cached copy (the local database may have gone back: a restore). */
  forget(table: TableName): void {
    this.cache.delete(formatTableName(table));
  }
}
