/**
 * The copy role (server config `copyRole`): a role with BYPASSRLS that the server's role switches
 * to for one statement, the `COPY` of a first-sync batch straight into a replica table
 * (replica-rows.ts). PostgreSQL refuses `COPY FROM` into a table whose row-level security applies to
 * the current role, and without it a batch goes through a staging table and an `insert ... select`,
 * which costs the database about a sixth more CPU (docs/scaling.md, First sync).
 *
 * It gives the server no power it lacks: the server's role owns the replica tables and could turn
 * their row-level security off. What row-level security guards against, a statement of the server
 * that names the wrong tenant, the COPY rules out by its form: its tenant columns are written by the
 * server in front of every line (tenant-lines.ts), never read from the body.
 */
import type pg from 'pg';

import { ConfigError, toError } from '../shared/errors.js';
import { ident, qualified, SqlState, sqlstateOf } from '../shared/pg.js';
import type { TableName } from '../shared/protocol.js';

export class CopyRole {
  /** `schema.name` -> whether batches may be copied into it as the role (decided once per process). */
  private readonly ready = new Map<string, Promise<boolean>>();

  private constructor(
    readonly name: string,
    private readonly pool: pg.Pool,
    private readonly warn: (table: string, reason: string) => void,
  ) {}

  /** Checks that the role exists, bypasses row-level security, and that the server's role may SET ROLE to it. */
  static async open(pool: pg.Pool, name: string, warn: (table: string, reason: string) => void): Promise<CopyRole> {
    const { rows } = await pool.query<{ bypass: boolean; me: string }>(
      /* sql */ `select rolbypassrls or rolsuper as bypass, current_user::text as me from pg_roles where rolname = $1`,
      [name],
    );
    const role = rows[0];
    if (!role) throw new ConfigError(`copyRole ${name}: no such role (create role ${ident(name)} nologin bypassrls, as a superuser)`);
    if (!role.bypass) throw new ConfigError(`copyRole ${name}: the role must have BYPASSRLS (alter role ${ident(name)} bypassrls, as a superuser)`);
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(/* sql */ `set local role ${ident(name)}`);
    } catch (e) {
      throw new ConfigError(`copyRole ${name}: the server's role cannot switch to it (grant ${ident(name)} to ${ident(role.me)}): ${toError(e).message}`, {
        cause: e,
      });
    } finally {
      await client.query('rollback').catch(() => {});
      client.release();
    }
    return new CopyRole(name, pool, warn);
  }

  /**
   * Whether batches may be copied into `table` as the role: it has INSERT on the table and USAGE on
   * its schema, granted here (the server's role owns both) the first time this process asks. A table
   * the server may not grant on (another role owns it) keeps the staging path, with a warning.
   */
  mayCopyInto(table: TableName): Promise<boolean> {
    const label = `${table.schema}.${table.name}`;
    let ready = this.ready.get(label);
    if (!ready) {
      ready = this.grant(table).then(
        (granted) => {
          if (!granted) this.ready.delete(label); // no such table yet: the upload's own checks answer
          return granted;
        },
        (e: unknown) => {
          if (sqlstateOf(e) !== SqlState.INSUFFICIENT_PRIVILEGE) {
            this.ready.delete(label); // a passing failure (a lost connection): asked again next time
            throw e;
          }
          this.warn(label, `its batches stage and insert under row-level security: ${toError(e).message}`);
          return false;
        },
      );
      this.ready.set(label, ready);
    }
    return ready;
  }

  /** Grants what the role lacks on `table`; false when there is no such table. */
  private async grant(table: TableName): Promise<boolean> {
    const t = qualified(table.schema, table.name);
    const { rows } = await this.pool.query<{ found: boolean; insert: boolean | null; usage: boolean | null }>(
      /* sql */ `select to_regclass($2) is not null as found, has_table_privilege($1, to_regclass($2), 'INSERT') as insert,
                        has_schema_privilege($1, to_regnamespace($3), 'USAGE') as usage`,
      [this.name, t, ident(table.schema)],
    );
    const have = rows[0];
    if (!have?.found) return false;
    if (!have.usage) await this.pool.query(/* sql */ `grant usage on schema ${ident(table.schema)} to ${ident(this.name)}`);
    if (!have.insert) await this.pool.query(/* sql */ `grant insert on table ${t} to ${ident(this.name)}`);
    return true;
  }

  /** The statement that switches the transaction to the role (undone by `reset role` or the transaction's end). */
  setRoleSql(): string {
    return /* sql */ `set local role ${ident(this.name)}`;
  }
}
