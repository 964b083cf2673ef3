/**
 * Who a request acts for, and the SQL that confines a transaction to that tenant: the settings the
 * row-level security policy reads, and the condition every statement on a replica table carries.
 */
import type pg from 'pg';

import { ident, PINNED_SETTINGS_SQL } from '../shared/pg.js';
import { TENANT_CLIENT_COLUMN, TENANT_DATABASE_COLUMN } from '../shared/protocol.js';

/** A registered database: the tenant every replica row and state row belongs to. */
export interface Tenant {
  clientId: string;
  databaseId: string;
}

/** Begins a tenant's work on replica rows: tenant settings for the RLS policy, pinned output settings. */
export async function enterTenant(client: pg.ClientBase, tenant: Tenant): Promise<void> {
  // One statement: the tenant (for row-level security) and the pinned settings together.
  await client.query(/* sql */ `${PINNED_SETTINGS_SQL}, set_config('tidemark.client_id', $1::text, true), set_config('tidemark.database_id', $2::text, true)`, [
    tenant.clientId,
    tenant.databaseId,
  ]);
}

/** The tenant condition on a replica table; the tenant is bound as $1 (client) and $2 (database). */
export function tenantWhere(alias?: string): string {
  const p = alias ? `${alias}.` : '';
  return `${p}${ident(TENANT_CLIENT_COLUMN)} = $1::text and ${p}${ident(TENANT_DATABASE_COLUMN)} = $2::uuid`;
}

/** The first two parameters of every replica statement. */
export function tenantParams(tenant: Tenant): [string, string] {
  return [tenant.clientId, tenant.databaseId];
}
