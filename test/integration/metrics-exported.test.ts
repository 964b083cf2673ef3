import { describe, expect, it } from 'vitest';

import { createDatabase, startTestAgent, startTestServer } from '../support/fixtures.js';
import { usedMetrics } from '../support/metric-names.js';

/** What a Prometheus text exposition declares (HELP/TYPE) and which series have samples. */
interface Exposition {
  help: Set<string>;
  type: Map<string, string>;
  sampled: Set<string>;
}

function parseExposition(text: string): Exposition {
  const out: Exposition = { help: new Set(), type: new Map(), sampled: new Set() };
  for (const line of text.split('\n')) {
    const help = /^# HELP (\S+) /.exec(line);
    if (help?.[1]) out.help.add(help[1]);
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type?.[1] && type[2]) out.type.set(type[1], type[2]);
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{| )/.exec(line);
    if (sample?.[1]) out.sampled.add(sample[1]);
  }
  return out;
}

describe('exported metrics', () => {
  it('include, with samples, every metric the dashboards and alert rules query, once an agent has synced, failed and repaired, and another synced', async () => {
    await using local = await createDatabase('local');
    await using server = await startTestServer();
    await local.query(`create table items (id int primary key, name text not null)`);
    await local.query(`insert into items select i, 'item ' || i from generate_series(1, 200) i`);
    // A table of that name already exists on the server, not made by tidemark: its runs fail (sync errors).
    await local.query(`create table drifted (id int primary key)`);
    await server.db.query(`create table public.drifted (id int primary key)`);
    const reg = await server.register('acme');
    await using agent = await startTestAgent(local, server, reg, { verification: { periodHours: 24 } });
    await agent.local.tracking.track('items');
    await agent.local.tracking.track('drifted');

    // 1. First upload (batches, throughput, lag, last success, rolling verification), and a failing table.
    const first = await agent.agent.tick();
    expect(first.tables.find((t) => t.table === 'public.items')?.converged).toBe(true);
    expect(first.tables.find((t) => t.table === 'public.drifted')?.error?.code).toBe('TM_REPLICA_SCHEMA_MISMATCH');

    // 2. An old row deleted locally: found by counts and bisection, deleted remotely (mismatches, rows deleted).
    await local.query(`delete from items where id = 50`);
    const second = await agent.agent.tick({ checkCount: true });
    expect(second.tables.find((t) => t.table === 'public.items')?.rowsDeleted).toBe(1);

    // 3. A row the replica refuses: failed batches, a skip-ahead and a quarantined row.
    await server.db.query(`alter table public.items add constraint no_777 check (id <> 777)`);
    await local.query(`insert into items values (777, 'refused by the replica')`);
    const third = await agent.agent.tick();
    expect(third.tables.find((t) => t.table === 'public.items')?.quarantined).toBe(1);

    // A second database of the fleet whose runs succeed (the per-database last-success series).
    await using local2 = await createDatabase('local');
    await local2.query(`create table things (id int primary key)`);
    await local2.query(`insert into things values (1), (2)`);
    await using agent2 = await startTestAgent(local2, server, await server.register('globex'));
    await agent2.local.tracking.track('things');
    expect((await agent2.agent.tick()).converged).toBe(true);

    const agentExposition = parseExposition(await agent.metrics.registry.metrics());
    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    const serverExposition = parseExposition(await response.text());

    const used = usedMetrics();
    expect(used.size).toBeGreaterThan(15);
    const problems: string[] = [];
    for (const [name, uses] of used) {
      // Agent series come from the agent, server series from the server; build info from both.
      const sources = name.startsWith('tidemark_agent_')
        ? [['agent', agentExposition] as const]
        : name.startsWith('tidemark_server_')
          ? [['server', serverExposition] as const]
          : [['agent', agentExposition] as const, ['server', serverExposition] as const];
      const where = `${uses[0]?.at.file}: ${uses[0]?.at.where}`;
      for (const [component, exposition] of sources) {
        if (!exposition.help.has(name)) {
          problems.push(`${name} is not exported by the ${component} (${where})`);
          continue;
        }
        const histogram = exposition.type.get(name) === 'histogram';
        for (const { reference, at } of uses) {
          if (reference.suffix && !histogram)
            problems.push(`${reference.token} is queried but ${name} is a ${exposition.type.get(name)} (${at.file}: ${at.where})`);
          if (!reference.suffix && histogram) problems.push(`${name} is a histogram; query ${name}_bucket/_count/_sum (${at.file}: ${at.where})`);
        }
        if (!exposition.sampled.has(histogram ? `${name}_bucket` : name)) problems.push(`${name} has no samples on the ${component} after the runs (${where})`);
      }
    }
    expect(problems).toEqual([]);
  });
});
