/**
 * Rows of replica tables: uploads (COPY into a staging table, then one insert or upsert), deletes
 * and recounts, each in one transaction with the table's state row. Every statement filters on both
 * tenant columns; row-level security is the second wall.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type pg from 'pg';
import copyStreams from 'pg-copy-streams';

import { ErrorCode, InvariantError, ProtocolError, TidemarkError } from '../shared/errors.js';
import { ident, SqlState, sqlstateOf, withTransaction } from '../shared/pg.js';
import {
  type DeleteRequest,
  type DeleteResult,
  type SettleParams,
  type TableName,
  type TableSummary,
  TENANT_CLIENT_COLUMN,
  TENANT_DATABASE_COLUMN,
  type UploadResult,
  VERSION_COLUMN,
} from '../shared/protocol.js';
import { columnListSql, type RowShape } from '../shared/row-shape.js';
import type { PgReplicaCatalog } from './replica-catalog.js';
import { inlineStage, parseCopyText, SMALL_BODY_BYTES } from './small-batch.js';
import { type PgTableState, stateKey, stateMaxVersionSql } from './table-state.js';
import { enterTenant, type Tenant, tenantParams, tenantWhere } from './tenant-scope.js';

/** Options of an upload (query parameters of POST .../tables/{table}). */
export interface UploadOptions {
  settle?: SettleParams;
  maxModified?: string;
  insertOnly?: boolean;
  /** The request said its body is empty (Content-Length: 0): a settle, one statement. */
  emptyBody?: boolean;
  /** The body's length as the request declared it (Content-Length, uncompressed): a small one needs no staging table (small-batch.ts). */
  bodyBytes?: number;
}

/** A small body, read whole: its values when parsed here, else the bytes for COPY. */
async function readSmall(body: Readable, columns: number): Promise<{ values: (string | null)[][] | null; bytes: Buffer }> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  const bytes = Buffer.concat(chunks);
  return { values: parseCopyText(bytes, columns), bytes };
}

/**
 * Errors caused by the rows themselves: 22xxx data exceptions (bad COPY text, bad values), 23xxx
 * integrity (check, not null, unique), 21000 duplicate keys in one batch, 54000 program limit
 * exceeded (e.g. an index row too large).
 */
function isDataRejection(sqlstate: string | undefined): boolean {
  return sqlstate !== undefined && (sqlstate.startsWith('22') || sqlstate.startsWith('23') || sqlstate === '21000' || sqlstate === '54000');
}

export class PgReplicaRows {
  constructor(
    private readonly pool: pg.Pool,
    private readonly catalog: PgReplicaCatalog,
    private readonly state: PgTableState,
  ) {}

  /**
   * Applies one batch of COPY text whole or not at all: COPY into a temporary staging table, then
   * one insert into the replica with the tenant columns added from the authenticated key, then the
   * state row, all in one transaction. Re-sending a batch changes nothing.
   *
   * `insertOnly` (the agent's first sync of a table, when the replica held none of its rows) skips
   * the upsert: a plain insert is about a quarter cheaper. A key that exists after all (a batch
   * re-sent after a lost answer) fails the batch with 409 TM_UPLOAD_CONFLICT and nothing written;
   * the agent then re-sends it as an upsert.
   *
   * The state row is locked only by its final update, so batches of one table can load in parallel
   * and take turns only to add their counts; insert-only batches take it before their insert
   * (they stage in parallel and insert in turn).
   */
  async upload(tenant: Tenant, table: TableName, body: Readable, options: UploadOptions): Promise<UploadResult> {
    if (options.emptyBody) {
      body.resume();
      const summary = await this.state.settleEmpty(this.pool, tenant, table, { settle: options.settle, maxModified: options.maxModified });
      return { rowsReceived: 0, rowsInserted: 0, rowsUpdated: 0, summary };
    }
    return withTransaction(this.pool, async (client) => {
      const { shape, stageColumns } = await this.catalog.require(client, tenant, table);
      await enterTenant(client, tenant);
      const cols = columnListSql(shape);
      const rejected = (e: unknown): never => {
        if (e instanceof TidemarkError) throw e;
        const sqlstate = sqlstateOf(e);
        if (sqlstate === SqlState.UNIQUE_VIOLATION && options.insertOnly)
          throw new ProtocolError(ErrorCode.UPLOAD_CONFLICT, 409, 'some rows already exist; re-send the batch without insertOnly', { cause: e });
        if (isDataRejection(sqlstate)) throw new ProtocolError(ErrorCode.UPLOAD_REJECTED, 400, `rows rejected: ${(e as Error).message}`, { cause: e });
        throw e;
      };
      // The rows' staging: a CTE over the parsed values for a small body, else a temporary table fed by COPY.
      const small = options.bodyBytes !== undefined && options.bodyBytes <= SMALL_BODY_BYTES ? await readSmall(body, shape.columns.length) : null;
      const values = small?.values ?? null;
      const staged = (firstParam: number): { cte: string; params: unknown[] } =>
        values ? inlineStage(stageColumns, values, firstParam) : { cte: '', params: [] };
      if (!values) {
        await client.query(/* sql */ `create temp table tidemark_stage on commit drop as select ${cols} from ${shape.table} with no data`);
        try {
          // A small body the parser left to COPY was read already: COPY takes its bytes.
          await pipeline(small ? Readable.from([small.bytes]) : body, client.query(copyStreams.from(/* sql */ `copy tidemark_stage (${cols}) from stdin`)));
        } catch (e) {
          rejected(e);
        }
      }
      const stage = staged(3);
      const tenantCols = `${ident(TENANT_CLIENT_COLUMN)}, ${ident(TENANT_DATABASE_COLUMN)}`;
      const keys = shape.keyColumns.map((k) => ident(k));
      // Key columns too: a key equal under its type or collation but spelled otherwise (citext, a
      // nondeterministic collation) takes the new spelling. An unchanged key keeps the update HOT.
      const sets = shape.columns.map((c) => `${ident(c.name)} = excluded.${ident(c.name)}`).join(', ');
      const v = ident(VERSION_COLUMN);
      let counts = { received: '0', inserted: '0', applied: '0', max_version: null as string | null };
      try {
        if (options.insertOnly) {
          // First-sync batches of a table stage side by side but insert one after another: the
          // state row is taken first (each batch updates it anyway, last). The next batch stages
          // while this one inserts, and two inserts never interleave at the right edge of the
          // replica's indexes, which would split their pages half-full (docs/scaling.md, First sync).
          // The batch's max version is read from the staging table before the turn, and the insert
          // returns nothing: a RETURNING list collected into a CTE cost about a sixth of the insert.
          const inline = staged(1);
          const top = await client.query<{ max_version: string | null }>(
            /* sql */ `${inline.cte} select max(${v})::text as max_version from tidemark_stage`,
            inline.params,
          );
          await this.state.lock(client, tenant, table);
          const res = await client.query(
            /* sql */ `${stage.cte} insert into ${shape.table} (${tenantCols}, ${cols}) select $1::text, $2::uuid, ${cols} from tidemark_stage`,
            [...tenantParams(tenant), ...stage.params],
          );
          const n = String(res.rowCount ?? 0);
          counts = { received: n, inserted: n, applied: n, max_version: top.rows[0]?.max_version ?? null };
        } else {
          // A late or replayed batch never replaces a newer row: the update applies only when the
          // stored version is not above the sent one (equal versions: this, the newer request, wins).
          // Skipped rows are not returned, so received minus applied counts the stale ones.
          const { rows } = await client.query<{ received: string; inserted: string; applied: string; max_version: string | null }>(
            /* sql */ `
            ${stage.cte || 'with'}${stage.cte ? ',' : ''} up as (
              insert into ${shape.table} as t (${tenantCols}, ${cols})
              select $1::text, $2::uuid, ${cols} from tidemark_stage
              on conflict (${[tenantCols, ...keys].join(', ')}) do update set ${sets}
                where t.${v} <= excluded.${v}
              -- xmax = 0 on the new row version means it was inserted, not updated
              returning (t.xmax = 0) as inserted, t.${v} as v)
            select (select count(*) from tidemark_stage)::text as received, count(*)::text as applied,
                   count(*) filter (where inserted)::text as inserted, max(v)::text as max_version from up`,
            [...tenantParams(tenant), ...stage.params],
          );
          const r = rows[0];
          if (!r) throw new InvariantError('an aggregate returned no row');
          counts = r;
          if (Number(r.applied) < Number(r.received))
            counts.applied = String(Number(r.applied) + (await this.replaceForeignRows(client, tenant, table, shape, staged(5))));
        }
      } catch (e) {
        rejected(e);
      }
      const received = Number(counts.received);
      const inserted = Number(counts.inserted);
      const summary = await this.state.addUpload(client, tenant, table, {
        inserted,
        maxVersion: counts.max_version,
        settle: options.settle,
        maxModified: options.maxModified,
      });
      // rowsReceived - rowsInserted - rowsUpdated rows were stale: a newer version was already here.
      return { rowsReceived: received, rowsInserted: inserted, rowsUpdated: Number(counts.applied) - inserted, summary };
    });
  }

  /**
   * The stale rows of a batch whose replica version is above anything tidemark ever applied for
   * this tenant (the state row's max version) were not written by tidemark: someone edited the
   * replica behind its back. The local row is the truth there, so a repair of such a row goes
   * through. A separate statement, so its snapshot sees every upload that committed while the
   * upsert waited for row locks (their rows and max version commit together). Returns the rows replaced.
   */
  private async replaceForeignRows(
    client: pg.ClientBase,
    tenant: Tenant,
    table: TableName,
    shape: RowShape,
    stage: { cte: string; params: unknown[] },
  ): Promise<number> {
    const v = ident(VERSION_COLUMN);
    const matches = shape.keyColumns.map((k) => `t.${ident(k)} = s.${ident(k)}`).join(' and ');
    const sets = shape.columns.filter((c) => !shape.keyColumns.includes(c.name)).map((c) => `${ident(c.name)} = s.${ident(c.name)}`);
    const res = await client.query(
      /* sql */ `
      ${stage.cte}
      update ${shape.table} t set ${sets.join(', ')} from tidemark_stage s
       where ${tenantWhere('t')} and ${matches} and t.${v} > s.${v} and t.${v} > coalesce((${stateMaxVersionSql}), -1)`,
      [...stateKey(tenant, table), ...stage.params],
    );
    return res.rowCount ?? 0;
  }

  /**
   * Deletes by (key AND version), everything above a version, or all of the tenant's rows, and
   * refreshes the state row. Conditional on version, a manifest's delete can never remove a newer
   * row that an upload placed meanwhile.
   */
  async deleteRows(tenant: Tenant, table: TableName, request: DeleteRequest): Promise<DeleteResult> {
    return withTransaction(this.pool, async (client) => {
      const { shape } = await this.catalog.require(client, tenant, table);
      await enterTenant(client, tenant);
      await this.state.lock(client, tenant, table);
      let deleted = 0;
      const v = ident(VERSION_COLUMN);
      if ('keys' in request) {
        if (request.keys.some((k) => k.key.length !== shape.keyColumns.length))
          throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `each key to delete must have ${shape.keyColumns.length} values, one per key column`);
        if (request.keys.length > 0) {
          const params: unknown[] = tenantParams(tenant);
          const arrays = shape.keyColumns.map((_, i) => {
            params.push(request.keys.map((k) => k.key[i]));
            return `$${params.length}::text[]`;
          });
          params.push(request.keys.map((k) => k.version));
          const versions = `$${params.length}::bigint[]`;
          const aliases = shape.keyColumns.map((_, i) => `k${i}`);
          const matches = shape.keyColumns
            .map((k, i) => {
              const type = shape.columns.find((c) => c.name === k)?.type as string; // whitelisted at declaration
              return `t.${ident(k)} = d.${aliases[i]}::${type}`;
            })
            .join(' and ');
          const res = await client.query(
            /* sql */ `
            delete from ${shape.table} t using unnest(${[...arrays, versions].join(', ')}) as d(${[...aliases, 'v'].join(', ')})
             where ${tenantWhere('t')} and ${matches} and t.${v} = d.v`,
            params,
          );
          deleted = res.rowCount ?? 0;
        }
      } else if ('aboveVersion' in request) {
        const res = await client.query(/* sql */ `delete from ${shape.table} where ${tenantWhere()} and ${v} > $3::bigint`, [
          ...tenantParams(tenant),
          request.aboveVersion,
        ]);
        deleted = res.rowCount ?? 0;
      } else {
        const res = await client.query(/* sql */ `delete from ${shape.table} where ${tenantWhere()}`, tenantParams(tenant));
        deleted = res.rowCount ?? 0;
      }
      if (deleted > 0)
        await this.state.subtractDeleted(client, tenant, table, deleted, /* sql */ `select max(${v}) from ${shape.table} where ${tenantWhere()}`);
      return { rowsDeleted: deleted, summary: await this.state.read(client, tenant, table) };
    });
  }

  /**
   * Recomputes the state row's count and max version from the rows (an index-only count of the
   * tenant's rows). Called by the agent after a full verification, and when counts differ although
   * no row does: someone edited the replica behind tidemark's back and the O(1) figures drifted.
   */
  async recount(tenant: Tenant, table: TableName): Promise<TableSummary> {
    return withTransaction(this.pool, async (client) => {
      const { shape } = await this.catalog.require(client, tenant, table);
      await enterTenant(client, tenant);
      await this.state.lock(client, tenant, table);
      const v = ident(VERSION_COLUMN);
      await this.state.setCounts(client, tenant, table, /* sql */ `select count(*) as n, max(${v}) as max_version from ${shape.table} where ${tenantWhere()}`);
      return this.state.read(client, tenant, table);
    });
  }
}
