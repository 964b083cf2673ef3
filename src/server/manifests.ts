/**
 * Manifests of replica rows (summary, bucket hash sums, or rows of buckets): one read-only
 * snapshot, one scan, built with the same SQL the agent runs (shared/row-shape.ts).
 */
import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { SqlState, sqlstateOf, withTransaction } from '../shared/pg.js';
import type { ManifestRequest, ManifestResponse, TableName } from '../shared/protocol.js';
import { manifestQuery, manifestResponse } from '../shared/row-shape.js';
import type { PgReplicaCatalog } from './replica-catalog.js';
import { enterTenant, type Tenant, tenantParams, tenantWhere } from './tenant-scope.js';

export class PgManifests {
  constructor(
    private readonly pool: pg.Pool,
    private readonly catalog: PgReplicaCatalog,
  ) {}

  async manifest(tenant: Tenant, table: TableName, request: ManifestRequest): Promise<ManifestResponse> {
    return withTransaction(
      this.pool,
      async (client) => {
        const { shape } = await this.catalog.require(client, tenant, table);
        await enterTenant(client, tenant);
        try {
          const { rows } = await client.query<Record<string, unknown>>(manifestQuery(shape, request, tenantParams(tenant), tenantWhere()));
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
}
