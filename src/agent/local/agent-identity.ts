/**
 * The agent's identity in the local database: its persistent id (`tidemark.agent`, so a restarted
 * agent keeps its server lease) and the single-agent lock (a session advisory lock: one agent per
 * local database).
 */
import { randomUUID } from 'node:crypto';

import type pg from 'pg';

/** A persistent id for this database's agent, created on first use. */
export async function readAgentId(pool: pg.Pool): Promise<string> {
  const { rows } = await pool.query<{ agent_id: string }>(
    /* sql */ `with ins as (insert into tidemark.agent (agent_id) values ($1::uuid) on conflict do nothing returning agent_id::text)
     select agent_id from ins union all select agent_id::text from tidemark.agent limit 1`,
    [randomUUID()],
  );
  return (rows[0] as { agent_id: string }).agent_id;
}

/**
 * Holds a session advisory lock for as long as the returned client lives: one agent per local
 * database. Returns null if another agent holds it.
 */
export async function lockAgent(pool: pg.Pool): Promise<{ release: () => Promise<void> } | null> {
  const client = await pool.connect();
  const { rows } = await client.query<{ ok: boolean }>(/* sql */ `select pg_try_advisory_lock(hashtext('tidemark.agent')) as ok`);
  if (!rows[0]?.ok) {
    client.release();
    return null;
  }
  return {
    release: async () => {
      try {
        await client.query(/* sql */ `select pg_advisory_unlock(hashtext('tidemark.agent'))`);
      } finally {
        client.release();
      }
    },
  };
}
