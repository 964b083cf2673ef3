/**
 * Manifests of replica rows (summary, bucket hash sums, or rows of buckets): one read-only
 * snapshot, one scan, built with the same SQL the agent runs (shared/row-shape.ts).
 */
import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { SqlState, sqlstateOf, withTransaction } from '../shared/pg.js';
import type { ManifestRequest, ManifestResponse, TableName } from '../shared/protocol.js';
import { bucketLayout, manifestQuery, manifestResponse } from '../shared/row-shape.js';
import type { PgReplicaCatalog } from './replica-catalog.js';
import { enterTenant, type Tenant, tenantParams, tenantWhere } from './tenant-scope.js';

/** Bounds of one manifest answer (server config `manifestMaxRows`, `manifestMaxBuckets`). */
export interface ManifestLimits {
  maxRows: number;
  maxBuckets: number;
}

function tooLarge(message: string): ProtocolError {
  return new ProtocolError(ErrorCode.REQUEST_INVALID, 400, message);
}

export class PgManifests {
  constructor(
    private readonly pool: pg.Pool,
    private readonly catalog: PgReplicaCatalog,
    private readonly limits: ManifestLimits,
  ) {}

  /**
   * Every answer is bounded before any work: a buckets answer by its size (decided from the request
   * alone), a rows answer by a LIMIT one past the bound, so an oversized one is never built.
   */
  async manifest(tenant: Tenant, table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    const { maxRows, maxBuckets } = this.limits;
    if (request.level === 'buckets') {
      const slots = bucketLayout(request.bucketBits ?? 0, request.within).slots;
      if (slots > maxBuckets)
        throw tooLarge(
          `a buckets answer holds at most ${maxBuckets} buckets (manifestMaxBuckets); this request asks for ${slots} (2^bucketBits, or the within buckets × 2^(bucketBits - within.bits))`,
        );
    }
    return withTransaction(
      this.pool,
      async (client) => {
        // Read through this tenant's own column types (a column the union widened is cast back).
        const { hashShape: shape } = await this.catalog.require(client, tenant, table);
        for (const bound of [request.range.lower, request.range.upper])
          if (bound?.key && bound.key.length !== shape.keyColumns.length)
            throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `a range bound's key must have ${shape.keyColumns.length} values, one per key column`);
        await enterTenant(client, tenant);
        try {
          const query = manifestQuery(shape, request, tenantParams(tenant), tenantWhere());
          if (request.level === 'rows') query.text += ` limit ${maxRows + 1}`;
          const { rows } = await client.query<Record<string, unknown>>(query);
          if (request.level === 'rows' && rows.length > maxRows)
            throw tooLarge(`a rows answer lists at most ${maxRows} rows (manifestMaxRows); ask for fewer buckets at a time, or more bucket bits`);
          return manifestResponse(request, rows);
        } catch (e) {
          // No extended hash function for a column type (or PostgreSQL before 14): the agent hashes text instead.
          if (sqlstateOf(e) === SqlState.UNDEFINED_FUNCTION && request.hashKind === 'record')
            throw new ProtocolError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, 400, `record hashing unsupported here: ${(e as Error).message}`, { cause: e });
          throw e;
        }
      },
      { isolation: 'repeatable read', readOnly: true },
    );
  }

  /**
   * The tenant's rows in the key-hash buckets of these key-set frames whose key no frame lists:
   * an offline import's deletion check (bundle-import.ts). `framesJson` is a JSON array of the
   * frames as the bundle holds them (`{"buckets": [...], "rows": [[key, version], ...]}`, key the
   * text of each key column; checked by the import's first pass). PostgreSQL reads them and makes
   * the comparison (an anti-join), so the key sets never become JavaScript objects on the server;
   * only the absent rows come back.
   */
  async absentKeys(tenant: Tenant, table: TableName, bucketBits: number, framesJson: string): Promise<{ key: string[]; version: string }[]> {
    return withTransaction(
      this.pool,
      async (client) => {
        const { hashShape: shape } = await this.catalog.require(client, tenant, table);
        await enterTenant(client, tenant);
        const listed = await client.query<{ buckets: number[] }>(
          /* sql */ `select coalesce(array_agg(distinct b::int), '{}') as buckets
            from jsonb_array_elements($1::jsonb) as f(frame), jsonb_array_elements_text(f.frame -> 'buckets') as b`,
          [framesJson],
        );
        const buckets = listed.rows[0]?.buckets ?? [];
        if (buckets.length === 0) return [];
        const request: ManifestRequest = { mode: 'count', range: { lower: null, upper: null }, hashKind: 'text', level: 'rows', bucketBits, buckets };
        const query = manifestQuery(shape, request, tenantParams(tenant), tenantWhere());
        query.values.push(framesJson);
        const frames = `$${query.values.length}::jsonb`;
        const { rows } = await client.query<{ k: string[]; v: string }>(
          /* sql */ `select m.k, m.v from (${query.text}) m
            where not exists (
              select from jsonb_array_elements(${frames}) as f(frame), jsonb_array_elements(f.frame -> 'rows') as s(pair)
               where s.pair -> 0 = to_jsonb(m.k))`,
          query.values,
        );
        return rows.map((r) => ({ key: r.k, version: r.v }));
      },
      { isolation: 'repeatable read', readOnly: true },
    );
  }
}
