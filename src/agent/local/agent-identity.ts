/**
 * The agent's identity in the local database: its persistent id (`tidemark.agent`), so a restarted
 * agent keeps its server lease. The single-agent lock is agent-lock.ts.
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
