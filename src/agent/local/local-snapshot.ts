/**
 * One table's read snapshot of the local database (REPEATABLE READ, READ ONLY) on a dedicated
 * connection: statistics, counts, COPY streams of ranges or keys, manifests and bounds. Everything
 * a run reads of the user's table comes from it, so the run compares one consistent local state
 * with the remote.
 */
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';

import type pg from 'pg';
import copyStreams from 'pg-copy-streams';

import { InvariantError } from '../../shared/errors.js';
import { ident, PINNED_SETTINGS_SQL, type SqlType, wrapPgError } from '../../shared/pg.js';
import { type Bound, formatTableName, type KeyRange, type ManifestRequest, type ManifestResponse, VERSION_COLUMN } from '../../shared/protocol.js';
import {
  columnListSql,
  keyColumnSql,
  keyTextSql,
  manifestQuery,
  manifestResponse,
  orderSql,
  positionalBinder,
  rangeSql,
  recordHashable,
} from '../../shared/row-shape.js';
import { LEAVES_SQL, type LocalTable } from './local-catalog.js';

export interface Snapshot {
  /** Every version below xmin is settled (committed or aborted). */
  xmin: string;
  xmax: string;
  xip: string[];
}

/** Opens a REPEATABLE READ, READ ONLY snapshot of the database for one table's run. */
export async function openSnapshot(pool: pg.Pool, table: LocalTable): Promise<LocalSnapshot> {
  const client = await pool.connect();
  const onError = (): void => {}; // until LocalSnapshot takes the client (its queries reject meanwhile)
  client.on('error', onError);
  try {
    await client.query('begin isolation level repeatable read read only');
    const { rows } = await client.query<{ xmin: string; xmax: string; xip: string[] }>(
      /* sql */ `select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax,
              coalesce(array(select x::text from pg_snapshot_xip(s) as x order by x::text::bigint), '{}') as xip
         from pg_current_snapshot() as s`,
    );
    await client.query(PINNED_SETTINGS_SQL);
    client.off('error', onError);
    return new LocalSnapshot(client, table, rows[0] as Snapshot);
  } catch (e) {
    client.release(true);
    throw wrapPgError(e, `opening a snapshot of ${formatTableName(table.name)} failed`);
  }
}

export class LocalSnapshot {
  private closed = false;
  /** Set when the connection died (the database restarted): queries fail, and close() discards it. */
  private broken: Error | null = null;
  private readonly onError = (e: Error): void => {
    this.broken = e;
  };

  constructor(
    private readonly client: pg.PoolClient,
    readonly table: LocalTable,
    readonly snapshot: Snapshot,
  ) {
    // A checked-out client has no error listener: without this one, a database restart during a
    // run would crash the process instead of failing the run.
    client.on('error', this.onError);
  }

  /**
   * A COPY whose reader stopped before its end (a run's budget, a failed upload). Until it is read
   * to its end, PostgreSQL's answer to any other query waits behind it on this connection: a later
   * query drains it first, and close() discards the connection instead.
   */
  private copy: Readable | null = null;

  private track(stream: Readable): Readable {
    // Its reader listens for errors while it reads; one after (the connection ended by close())
    // must not go unhandled.
    stream.on('error', () => {});
    this.copy = stream;
    stream.once('end', () => {
      if (this.copy === stream) this.copy = null;
    });
    return stream;
  }

  /** The connection, once a COPY left unfinished by its reader is out of the way. */
  private async conn(): Promise<pg.PoolClient> {
    const copy = this.copy;
    if (copy) {
      this.copy = null;
      // A destroyed stream no longer reads the connection: nothing more can be asked of it.
      if (copy.destroyed) {
        this.broken ??= new InvariantError(`a COPY of ${formatTableName(this.table.name)} was abandoned; the snapshot is unusable`);
        throw this.broken;
      }
      copy.resume();
      await finished(copy).catch(() => {}); // its error, if any, is the next query's too
    }
    return this.client;
  }

  /** The error that killed the snapshot's connection (the database restarted or ended it), if it died. */
  get connectionLost(): Error | null {
    return this.broken;
  }

  async stats(): Promise<{ maxVersion: string | null; maxModifiedSince: (since: string) => Promise<string | null> }> {
    const { shape } = this.table;
    const { rows } = await (await this.conn()).query<{ v: string | null }>(/* sql */ `select max(${ident(VERSION_COLUMN)})::text as v from ${shape.table}`);
    return {
      maxVersion: rows[0]?.v ?? null,
      maxModifiedSince: async (since: string) => {
        if (!this.table.modifiedColumn) return null;
        const r = await (await this.conn()).query<{ m: Date | null }>(
          /* sql */ `select max(${ident(this.table.modifiedColumn)})::timestamptz as m from ${shape.table} where ${ident(VERSION_COLUMN)} >= $1::bigint`,
          [since],
        );
        return r.rows[0]?.m?.toISOString() ?? null;
      },
    };
  }

  /** Whether any row of the snapshot carries one of these versions (transaction ids): index probes. */
  async hasVersionIn(versions: string[]): Promise<boolean> {
    const { rows } = await (await this.conn()).query<{ found: boolean }>(
      /* sql */ `select exists (select 1 from ${this.table.shape.table} where ${ident(VERSION_COLUMN)} = any($1::bigint[])) as found`,
      [versions],
    );
    return rows[0]?.found === true;
  }

  async count(range: KeyRange = { lower: null, upper: null }): Promise<number> {
    const values: unknown[] = [];
    const cond = rangeSql(this.table.shape, range, positionalBinder(values));
    const { rows } = await (await this.conn()).query<{ n: string }>(
      /* sql */ `select count(*)::text as n from ${this.table.shape.table} where ${cond}`,
      values,
    );
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Streams the rows of the given ranges as COPY text, in (version, key) order, columns in wire order.
   * COPY takes no bind parameters: values are staged with set_config and read back with current_setting.
   */
  async copyOut(range: KeyRange): Promise<Readable> {
    const staged: [string, string][] = [];
    const cond = rangeSql(this.table.shape, range, (value, type: SqlType) => {
      const name = `tidemark.p${staged.length}`;
      staged.push([name, value]);
      return `current_setting('${name}')::${type}`;
    });
    for (const [name, value] of staged) await (await this.conn()).query(/* sql */ `select set_config($1::text, $2::text, true)`, [name, value]);
    const { shape } = this.table;
    return this.track(
      (await this.conn()).query(
        copyStreams.to(/* sql */ `copy (select ${columnListSql(shape)} from ${shape.table} where ${cond} order by ${orderSql(shape)}) to stdout`),
      ),
    );
  }

  /**
   * Join driven by the key list (primary-key lookups), never a scan of the table:
   * `from jsonb_array_elements(keys) join table on key = ...`.
   */
  private keyJoinSql(keysSql: string): string {
    const { shape } = this.table;
    const matches = shape.keyColumns
      .map((k, i) => {
        const type = shape.columns.find((c) => c.name === k)?.type as SqlType; // from pg_catalog format_type
        return `t.${ident(k)} = (tidemark_keys.tidemark_key->>${i})::${type}`;
      })
      .join(' and ');
    return `(select distinct tidemark_key from jsonb_array_elements(${keysSql}) as e(tidemark_key)) as tidemark_keys join ${shape.table} t on ${matches}`;
  }

  /** Streams the rows with the given keys (text forms) as COPY text, in (version, key) order. */
  async copyOutKeys(keys: string[][]): Promise<Readable> {
    const { shape } = this.table;
    await (await this.conn()).query(/* sql */ `select set_config('tidemark.keys', $1::text, true)`, [JSON.stringify(keys)]);
    const order = [ident(VERSION_COLUMN), ...shape.keyColumns.map((k) => keyColumnSql(shape, k))].map((c) => `t.${c}`).join(', ');
    return this.track(
      (await this.conn()).query(
        copyStreams.to(
          /* sql */ `copy (select ${shape.columns.map((c) => `t.${ident(c.name)}`).join(', ')}
          from ${this.keyJoinSql(`current_setting('tidemark.keys')::jsonb`)} order by ${order}) to stdout`,
        ),
      ),
    );
  }

  /** The current version of each of these keys that exists in the snapshot, by JSON of the key. */
  async versionsByKeys(keys: string[][]): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    const { shape } = this.table;
    const keyText = `array[${shape.keyColumns.map((k) => `t.${ident(k)}::text`).join(', ')}]`;
    const { rows } = await (await this.conn()).query<{ k: string[]; v: string }>(
      /* sql */ `select ${keyText} as k, t.${ident(VERSION_COLUMN)}::text as v from ${this.keyJoinSql('$1::jsonb')}`,
      [JSON.stringify(keys)],
    );
    return new Map(rows.map((r) => [JSON.stringify(r.k), r.v]));
  }

  /** The (version, key) of the row `n` rows into `range` (0-based), or null when the range has no more rows. */
  async nthBound(range: KeyRange, n: number): Promise<Bound | null> {
    const { shape } = this.table;
    const values: unknown[] = [];
    const cond = rangeSql(shape, range, positionalBinder(values));
    values.push(n + 1);
    // An index-only scan that stops after n + 1 rows; the last of them is the bound.
    const { rows } = await (await this.conn()).query<{ v: string; k: string[]; position: string }>(
      /* sql */ `select v, k, rn::text as position from (
         select ${ident(VERSION_COLUMN)}::text as v, ${keyTextSql(shape)} as k, row_number() over () as rn
           from (select * from ${shape.table} where ${cond} order by ${orderSql(shape)} limit $${values.length}::bigint) t) s
        order by s.rn desc limit 1`,
      values,
    );
    const row = rows[0];
    return row && Number(row.position) === n + 1 ? { version: row.v, key: row.k } : null;
  }

  /**
   * The planner's estimate of the table's rows (pg_class.reltuples, summed over the partitions of a
   * partitioned table: its parent has no estimate of its own), for sizing verification slices.
   */
  async estimatedRows(): Promise<number> {
    const { rows } = await (await this.conn()).query<{ n: number }>(
      /* sql */ `with leaves as (${LEAVES_SQL}) select coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 as n from leaves l join pg_class c on c.oid = l.oid`,
      [this.table.shape.table],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * Whether rows can be hashed with `hash_record_extended` here: only types whose hash is exact
   * (`recordHashable`), PostgreSQL 14+ and an extended hash function for every column type (probed
   * on a row of typed NULLs; types come from pg_catalog).
   */
  async recordHashing(): Promise<boolean> {
    if (!recordHashable(this.table.shape.columns)) return false;
    const { rows } = await (await this.conn()).query<{ v: number }>(/* sql */ `select current_setting('server_version_num')::int as v`);
    if ((rows[0]?.v ?? 0) < 140000) return false;
    const nulls = this.table.shape.columns.map((c) => `null::${c.type}`).join(', ');
    await (await this.conn()).query('savepoint tidemark_probe');
    try {
      await (await this.conn()).query(/* sql */ `select hash_record_extended(row(${nulls}), 0)`);
      await (await this.conn()).query('release savepoint tidemark_probe');
      return true;
    } catch {
      await (await this.conn()).query('rollback to savepoint tidemark_probe');
      return false;
    }
  }

  /** Answers a manifest request from the snapshot, with the very SQL the server runs. */
  async manifest(request: ManifestRequest): Promise<ManifestResponse> {
    const { rows } = await (await this.conn()).query<Record<string, unknown>>(manifestQuery(this.table.shape, request, [], 'true'));
    return manifestResponse(request, rows);
  }

  /**
   * The (key, version) of every row of a rows-level request's buckets, as one JSON array text that
   * PostgreSQL builds (`[[key, version], ...]`, key the text of each key column): an offline
   * bundle's key set (bundle-export.ts) without a JavaScript object per row.
   */
  async keySetJson(request: ManifestRequest): Promise<{ json: string; count: number }> {
    const q = manifestQuery(this.table.shape, { ...request, level: 'rows' }, [], 'true');
    const { rows } = await (await this.conn()).query<{ json: string; n: string }>(
      /* sql */ `select '[' || coalesce(string_agg('[' || array_to_json(m.k)::text || ',"' || m.v || '"]', ','), '') || ']' as json, count(*)::text as n
        from (${q.text}) m`,
      q.values,
    );
    return { json: rows[0]?.json ?? '[]', count: Number(rows[0]?.n ?? 0) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.broken) throw this.broken;
      // A COPY cut short would have to be read to its end first: discard the connection instead.
      if (this.copy) throw new InvariantError('a COPY is unfinished');
      await this.client.query('rollback');
      this.client.off('error', this.onError);
      this.client.release();
    } catch {
      this.client.release(true);
    }
  }
}
