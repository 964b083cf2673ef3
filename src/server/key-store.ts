/**
 * Enrollment tokens and database keys (`tidemark.enrollment_token`, `tidemark.database_key`), and
 * deregistration. Tokens and keys are stored as their SHA-256 only.
 *
 * A key is `active` or `pending`. Both authenticate. Rotation, driven by the agent (README, Key
 * rotation): (1) with its current key it asks for a new one, stored `pending`; (2) it writes the new
 * key to its config; (3) with the new key it confirms: the new key becomes `active` and every other
 * key retires after the overlap window. A crash between any two steps leaves a key that works:
 * before (2) the old key (a pending key nobody stored is replaced by the next rotation), after (2)
 * the new one, pending or confirmed. Asking for a new key with a pending key confirms it first, so
 * a rotation interrupted after (2) is completed by the next one and never discards the stored key.
 */
import { randomBytes } from 'node:crypto';

import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { qualified, withTransaction } from '../shared/pg.js';
import type { ConfirmKeyResult, DeregisterResult, EnrollmentTokenResult, IssuedKey, RevokeKeysResult } from '../shared/protocol/key-messages.js';
import { formatTableName, type RegisterResult } from '../shared/protocol.js';
import { KeyCache } from './key-cache.js';
import { generateApiKey, hashApiKey, insertDatabase } from './pg-tenants.js';
import { enterTenant, type Tenant, tenantParams, tenantWhere } from './tenant-scope.js';

export function generateEnrollmentToken(): string {
  return `tme_${randomBytes(32).toString('base64url')}`;
}

/** What the key routes (admin-key-routes.ts) need from storage. */
export interface KeyStore {
  createEnrollmentToken(clientId: string, expiresSeconds: number, uses: number): Promise<EnrollmentTokenResult>;
  /** Registers a database with a token, using one of its uses; null when the token is unknown, used up or expired. */
  enroll(token: string, name: string): Promise<RegisterResult | null>;
  /** A new pending key for the tenant; `presentedKey` (the caller's) is confirmed first if it is pending. */
  issueKey(tenant: Tenant, presentedKey: string): Promise<IssuedKey>;
  /** Makes `presentedKey` the database's key; the others retire after `overlapSeconds`. */
  confirmKey(tenant: Tenant, presentedKey: string, overlapSeconds: number): Promise<ConfirmKeyResult>;
  /** Every key of the database stops working now; returns a new one. */
  revokeKeys(tenant: Tenant): Promise<RevokeKeysResult>;
  /** Deletes the database: its replica rows, state rows, keys and registration. */
  deregister(tenant: Tenant): Promise<DeregisterResult>;
}

export class PgKeyStore implements KeyStore {
  constructor(
    private readonly pool: pg.Pool,
    /** The keys this process authenticated lately: a database's are forgotten at each change of its keys. */
    private readonly cache: KeyCache = new KeyCache(0),
  ) {}

  /** Runs a change of the database's keys, and forgets its cached keys once it is committed (and before, for lookups in between). */
  private async changingKeys<T>(tenant: Tenant, change: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    this.cache.forgetTenant(tenant);
    try {
      return await withTransaction(this.pool, async (client) => {
        await lockDatabase(client, tenant);
        return change(client);
      });
    } finally {
      this.cache.forgetTenant(tenant);
    }
  }

  async createEnrollmentToken(clientId: string, expiresSeconds: number, uses: number): Promise<EnrollmentTokenResult> {
    const token = generateEnrollmentToken();
    const { rows } = await this.pool.query<{ expires_at: Date }>(
      /* sql */ `
      insert into tidemark.enrollment_token (client_id, token_hash, uses_left, expires_at)
      values ($1::text, $2::bytea, $3::int, now() + make_interval(secs => $4::double precision))
      returning expires_at`,
      [clientId, hashApiKey(token), uses, expiresSeconds],
    );
    return { clientId, token, uses, expiresAt: (rows[0] as { expires_at: Date }).expires_at.toISOString() };
  }

  async enroll(token: string, name: string): Promise<RegisterResult | null> {
    return withTransaction(this.pool, async (client) => {
      // The row lock makes concurrent enrollments with one token take turns: never more uses than allowed.
      const { rows } = await client.query<{ client_id: string }>(
        /* sql */ `
        update tidemark.enrollment_token set uses_left = uses_left - 1
         where token_hash = $1::bytea and uses_left > 0 and expires_at > now()
        returning client_id`,
        [hashApiKey(token)],
      );
      const row = rows[0];
      if (!row) return null;
      // A used-up token is kept until it expires: a retry with it then says "not accepted", not "unknown".
      return insertDatabase(client, row.client_id, name);
    });
  }

  async issueKey(tenant: Tenant, presentedKey: string): Promise<IssuedKey> {
    return this.changingKeys(tenant, async (client) => {
      const presented = hashApiKey(presentedKey);
      const { rows } = await client.query<{ state: string }>(
        /* sql */ `select state from tidemark.database_key where client_id = $1::text and database_id = $2::uuid and key_hash = $3::bytea`,
        [tenant.clientId, tenant.databaseId, presented],
      );
      // The caller holds a pending key: it stored it, so it is the key now (a rotation cut before its confirmation).
      if (rows[0]?.state === 'pending') await promote(client, tenant, presented, 0);
      // A pending key other than the caller's was never stored by the caller: the new one replaces it.
      await client.query(
        /* sql */ `delete from tidemark.database_key where client_id = $1::text and database_id = $2::uuid and state = 'pending' and key_hash <> $3::bytea`,
        [tenant.clientId, tenant.databaseId, presented],
      );
      const apiKey = generateApiKey();
      await client.query(
        /* sql */ `insert into tidemark.database_key (client_id, database_id, key_hash, state) values ($1::text, $2::uuid, $3::bytea, 'pending')`,
        [tenant.clientId, tenant.databaseId, hashApiKey(apiKey)],
      );
      return { apiKey };
    });
  }

  async confirmKey(tenant: Tenant, presentedKey: string, overlapSeconds: number): Promise<ConfirmKeyResult> {
    return this.changingKeys(tenant, async (client) => {
      return promote(client, tenant, hashApiKey(presentedKey), overlapSeconds);
    });
  }

  async revokeKeys(tenant: Tenant): Promise<RevokeKeysResult> {
    return this.changingKeys(tenant, async (client) => {
      const res = await client.query(/* sql */ `delete from tidemark.database_key where client_id = $1::text and database_id = $2::uuid`, [
        tenant.clientId,
        tenant.databaseId,
      ]);
      const apiKey = generateApiKey();
      const hash = hashApiKey(apiKey);
      await client.query(
        /* sql */ `insert into tidemark.database_key (client_id, database_id, key_hash, state) values ($1::text, $2::uuid, $3::bytea, 'active')`,
        [tenant.clientId, tenant.databaseId, hash],
      );
      await client.query(/* sql */ `update tidemark.tenant_database set api_key_hash = $3::bytea where client_id = $1::text and database_id = $2::uuid`, [
        tenant.clientId,
        tenant.databaseId,
        hash,
      ]);
      return { ...tenant, keysRevoked: res.rowCount ?? 0, apiKey };
    });
  }

  async deregister(tenant: Tenant): Promise<DeregisterResult> {
    return this.changingKeys(tenant, async (client) => {
      const { rows } = await client.query<{ schema_name: string; table_name: string }>(
        /* sql */ `select schema_name, table_name from tidemark.table_state where client_id = $1::text and database_id = $2::uuid order by 1, 2`,
        tenantParams(tenant),
      );
      await enterTenant(client, tenant);
      let rowsDeleted = 0;
      for (const r of rows) {
        const res = await client.query(/* sql */ `delete from ${qualified(r.schema_name, r.table_name)} where ${tenantWhere()}`, tenantParams(tenant));
        rowsDeleted += res.rowCount ?? 0;
      }
      // The state rows, keys and bundle imports go with the registration (foreign keys on delete cascade).
      await client.query(/* sql */ `delete from tidemark.tenant_database where client_id = $1::text and database_id = $2::uuid`, tenantParams(tenant));
      return { ...tenant, tables: rows.map((r) => formatTableName({ schema: r.schema_name, name: r.table_name })), rowsDeleted };
    });
  }
}

/** Locks the database's registration row (key changes take turns); 404 when it is not registered. */
async function lockDatabase(client: pg.ClientBase, tenant: Tenant): Promise<void> {
  const { rowCount } = await client.query(
    /* sql */ `select from tidemark.tenant_database where client_id = $1::text and database_id = $2::uuid for update`,
    tenantParams(tenant),
  );
  if (!rowCount) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no such client/database');
}

/** Makes `keyHash` the active key (and the registration's current key); the other keys retire after `overlapSeconds`. */
async function promote(client: pg.ClientBase, tenant: Tenant, keyHash: Buffer, overlapSeconds: number): Promise<ConfirmKeyResult> {
  const promoted = await client.query(
    /* sql */ `
    update tidemark.database_key set state = 'active', retire_at = null
     where client_id = $1::text and database_id = $2::uuid and key_hash = $3::bytea`,
    [...tenantParams(tenant), keyHash],
  );
  if (!promoted.rowCount) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'this key is not a key of this database');
  // Pending keys other than this one were never stored by the agent: they go now, with keys already
  // retired. Active ones retire after the overlap (never later than already planned).
  await client.query(
    /* sql */ `
    delete from tidemark.database_key
     where client_id = $1::text and database_id = $2::uuid and key_hash <> $3::bytea and (state = 'pending' or retire_at <= now())`,
    [...tenantParams(tenant), keyHash],
  );
  const { rows } = await client.query<{ n: number; retire_at: Date }>(
    /* sql */ `
    with retiring as (
      update tidemark.database_key
         set retire_at = least(coalesce(retire_at, 'infinity'), now() + make_interval(secs => $4::double precision))
       where client_id = $1::text and database_id = $2::uuid and key_hash <> $3::bytea
      returning 1)
    select (select count(*)::int from retiring) as n, now() + make_interval(secs => $4::double precision) as retire_at`,
    [...tenantParams(tenant), keyHash, overlapSeconds],
  );
  await client.query(/* sql */ `update tidemark.tenant_database set api_key_hash = $3::bytea where client_id = $1::text and database_id = $2::uuid`, [
    ...tenantParams(tenant),
    keyHash,
  ]);
  const row = rows[0] as { n: number; retire_at: Date };
  return { keysRetiring: row.n, retireAt: row.retire_at.toISOString() };
}
