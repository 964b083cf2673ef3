/**
 * Tenants (`tidemark.tenant_database`): registration, authentication by API key (only their SHA-256
 * is stored, in `tidemark.database_key`: several per database while a key rotates, key-store.ts) and
 * the single-agent lease of each database.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';

import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { withTransaction } from '../shared/pg.js';
import type { RegisterResult, TenantInfo } from '../shared/protocol.js';
import { KeyCache } from './key-cache.js';
import type { PgTableState } from './table-state.js';
import type { Tenant } from './tenant-scope.js';

export function hashApiKey(apiKey: string): Buffer {
  return createHash('sha256').update(apiKey).digest();
}

export function generateApiKey(): string {
  return `tmk_${randomBytes(32).toString('base64url')}`;
}

/**
 * Registers a database in the caller's transaction: its registration row and its first key (only the
 * key's hash is stored; `api_key_hash` mirrors the current confirmed key).
 */
export async function insertDatabase(client: pg.ClientBase, clientId: string, name: string): Promise<RegisterResult> {
  const databaseId = randomUUID();
  const apiKey = generateApiKey();
  const hash = hashApiKey(apiKey);
  await client.query(
    /* sql */ `insert into tidemark.tenant_database (client_id, database_id, name, api_key_hash) values ($1::text, $2::uuid, $3::text, $4::bytea)`,
    [clientId, databaseId, name, hash],
  );
  await client.query(/* sql */ `insert into tidemark.database_key (client_id, database_id, key_hash, state) values ($1::text, $2::uuid, $3::bytea, 'active')`, [
    clientId,
    databaseId,
    hash,
  ]);
  return { clientId, databaseId, apiKey };
}

export class PgTenants {
  constructor(
    private readonly pool: pg.Pool,
    private readonly state: PgTableState,
    private readonly keys: KeyCache = new KeyCache(0),
  ) {}

  async registerDatabase(clientId: string, name: string): Promise<RegisterResult> {
    return withTransaction(this.pool, (client) => insertDatabase(client, clientId, name));
  }

  /**
   * The tenant a key belongs to, or null: any key of the database (tidemark.database_key, see
   * key-store.ts) that has not retired, pending or active. The stored hash is compared in constant time.
   * A key authenticated lately by this process costs no statement (key-cache.ts).
   */
  async authenticate(apiKey: string): Promise<Tenant | null> {
    const hash = hashApiKey(apiKey);
    const cached = this.keys.get(hash);
    if (cached) return cached;
    const mark = this.keys.mark;
    const { rows } = await this.pool.query<{ client_id: string; database_id: string; key_hash: Buffer; retire_at: Date | null }>(
      /* sql */ `
      select client_id, database_id::text, key_hash, retire_at from tidemark.database_key
       where key_hash = $1::bytea and (retire_at is null or retire_at > now())`,
      [hash],
    );
    const row = rows[0];
    if (!row || !timingSafeEqual(row.key_hash, hash)) return null;
    const tenant = { clientId: row.client_id, databaseId: row.database_id };
    this.keys.set(hash, tenant, row.retire_at, mark);
    return tenant;
  }

  /**
   * Takes or renews the database's lease for `agentId`. Returns null when granted, or the expiry of
   * the other agent's lease. One statement: the row lock makes concurrent claims take turns.
   */
  async acquireLease(tenant: Tenant, agentId: string, leaseSeconds: number): Promise<Date | null> {
    const { rows } = await this.pool.query<{ granted: boolean; lease_expires_at: Date }>(
      /* sql */ `
      with claim as (
        update tidemark.tenant_database
           set lease_agent_id = $3::text, lease_expires_at = now() + make_interval(secs => $4::double precision)
         where client_id = $1::text and database_id = $2::uuid
           and (lease_agent_id is null or lease_agent_id = $3::text or lease_expires_at < now())
        returning true as granted, lease_expires_at)
      select granted, lease_expires_at from claim
      union all
      select false, lease_expires_at from tidemark.tenant_database
       where client_id = $1::text and database_id = $2::uuid and not exists (select from claim)`,
      [tenant.clientId, tenant.databaseId, agentId, leaseSeconds],
    );
    const row = rows[0];
    if (!row) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'database not registered');
    return row.granted ? null : row.lease_expires_at;
  }

  async listTenants(clientId?: string, databaseId?: string): Promise<TenantInfo[]> {
    const { rows } = await this.pool.query<{ client_id: string; database_id: string; name: string; created_at: Date }>(
      /* sql */ `
      select client_id, database_id::text, name, created_at from tidemark.tenant_database
       where ($1::text is null or client_id = $1::text) and ($2::uuid is null or database_id = $2::uuid)
       order by client_id, created_at`,
      [clientId ?? null, databaseId ?? null],
    );
    const states = await this.state.list(this.pool, clientId, databaseId);
    const now = Date.now();
    return rows.map((r) => ({
      clientId: r.client_id,
      databaseId: r.database_id,
      name: r.name,
      createdAt: r.created_at.toISOString(),
      tables: states
        .filter((s) => s.clientId === r.client_id && s.databaseId === r.database_id)
        .map((s) => ({ ...s.summary, secondsSinceUpdate: s.updatedAt ? Math.max(0, (now - s.updatedAt.getTime()) / 1000) : null })),
    }));
  }

  async countTenants(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(/* sql */ `select count(*)::text as n from tidemark.tenant_database`);
    return Number(rows[0]?.n ?? 0);
  }
}
