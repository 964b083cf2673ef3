/**
 * The application beside the agent: a seeded stream of small transactions on the local tables
 * (inserts, updates, key updates, deletes, and transactions that roll back), like pgbench with a
 * custom script. It rides out restarts of its database: a transaction cut by one is simply lost
 * (never acknowledged, never counted), and the writer reconnects. The local database stays the
 * single source of truth; the test compares the replica with whatever it holds at the end.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import pg from 'pg';

import { seededRandom } from '../support/seeded-random.js';

export type WriteKind = 'insert' | 'update' | 'keyUpdate' | 'delete' | 'rollback' | 'touchAll';
export const WRITE_KINDS: readonly WriteKind[] = ['insert', 'update', 'keyUpdate', 'delete', 'rollback', 'touchAll'];

/** The tables the writer knows: `items` (integer key) and `pairs` (composite text + integer key). */
export const SCHEMA_SQL = /* sql */ `
  create table items (id int primary key, grp int not null, v bigint not null, note text);
  create table pairs (site text collate "C", code int, payload jsonb, primary key (site, code));`;

export function seedSql(items: number, pairs: number): string {
  return /* sql */ `
    insert into items select i, i % 7, i, 'seed ' || i from generate_series(1, ${items}) i;
    insert into pairs select 'site-' || (i % 5), i, jsonb_build_object('i', i) from generate_series(1, ${pairs}) i;`;
}

export class SeededWriter {
  /** Committed transactions, by kind (a transaction cut by a restart is not counted). */
  readonly committed: Record<WriteKind, number> = Object.fromEntries(WRITE_KINDS.map((k) => [k, 0])) as Record<WriteKind, number>;
  /** Transactions lost to a restart of the database (their outcome unknown to the writer). */
  interrupted = 0;
  private client: pg.Client | null = null;
  private readonly random: () => number;
  private nextItem: number;
  private nextPair: number;
  private loop: Promise<void> | null = null;
  private stopping = false;
  /** Transactions attempted by the background loop. */
  private attempts = 0;
  private readonly progress = new Set<() => void>();

  constructor(
    private readonly url: string,
    seed: number,
    start: { items: number; pairs: number },
  ) {
    this.random = seededRandom(seed ^ 0x5eed);
    this.nextItem = start.items + 1;
    this.nextPair = start.pairs + 1;
  }

  private int(n: number): number {
    return Math.floor(this.random() * n);
  }

  private async connection(): Promise<pg.Client> {
    if (this.client) return this.client;
    for (let attempt = 0; ; attempt++) {
      const c = new pg.Client({ connectionString: this.url });
      c.on('error', () => {
        if (this.client === c) this.client = null;
      });
      try {
        await c.connect();
        this.client = c;
        return c;
      } catch (e) {
        await c.end().catch(() => {});
        if (attempt >= 200) throw e;
        await sleep(50); // the database is restarting: try again
      }
    }
  }

  /** One seeded transaction. Returns its kind, or null if a restart cut it. */
  async step(): Promise<WriteKind | null> {
    const r = this.random();
    const kind: WriteKind = r < 0.3 ? 'insert' : r < 0.6 ? 'update' : r < 0.72 ? 'keyUpdate' : r < 0.87 ? 'delete' : 'rollback';
    const onPairs = this.random() < 0.3;
    const pick = this.int(this.nextItem);
    const pickPair = this.int(this.nextPair);
    const value = this.int(1_000_000);
    const statements: [string, unknown[]][] = [];
    // Rows are picked as "the first live key at or above a seeded number": the same choices on a replay.
    const item = `(select id from items where id >= $1::int order by id limit 1)`;
    const pair = `(select site, code from pairs where code >= $1::int order by code limit 1)`;
    switch (kind) {
      case 'insert':
        if (onPairs)
          statements.push([`insert into pairs values ('site-' || ($1::int % 5), $1::int, jsonb_build_object('v', $2::int))`, [this.nextPair++, value]]);
        else statements.push([`insert into items values ($1::int, $1::int % 7, $2::bigint, 'ins')`, [this.nextItem++, value]]);
        break;
      case 'update':
        if (onPairs) statements.push([`update pairs set payload = jsonb_build_object('v', $2::int) where (site, code) = ${pair}`, [pickPair, value]]);
        else statements.push([`update items set v = $2::bigint, note = 'upd ' || $2::bigint where id = ${item}`, [pick, value]]);
        break;
      case 'keyUpdate':
        if (onPairs) statements.push([`update pairs set code = $2::int where (site, code) = ${pair}`, [pickPair, this.nextPair++]]);
        else statements.push([`update items set id = $2::int where id = ${item}`, [pick, this.nextItem++]]);
        break;
      case 'delete':
        if (onPairs) statements.push([`delete from pairs where (site, code) = ${pair}`, [pickPair]]);
        else statements.push([`delete from items where id = ${item}`, [pick]]);
        break;
      case 'rollback':
        statements.push([`update items set v = v + 1000000 where id = ${item}`, [pick]]);
        statements.push([`insert into items values ($1::int, 0, 0, 'never')`, [this.nextItem + 1_000_000]]);
        break;
      default:
        break;
    }
    return this.transaction(kind, statements);
  }

  /** Updates every row of a table in one transaction: every row gets a newer version than any upload made before. */
  touchAll(table: 'items' | 'pairs'): Promise<WriteKind | null> {
    const sql = table === 'items' ? `update items set v = v + 1, note = 'touched'` : `update pairs set payload = payload || '{"touched": true}'`;
    return this.transaction('touchAll', [[sql, []]]);
  }

  /** Updates one row of `items` (the first at or above `id`), alone in its transaction. */
  updateOne(id: number): Promise<WriteKind | null> {
    return this.transaction('update', [
      [`update items set v = v + 7, note = 'one' where id = (select id from items where id >= $1::int order by id limit 1)`, [id]],
    ]);
  }

  /** Updates one row of `pairs` (the first with a code at or above `code`), alone in its transaction. */
  updatePair(code: number): Promise<WriteKind | null> {
    return this.transaction('update', [
      [
        `update pairs set payload = payload || '{"one": true}' where (site, code) = (select site, code from pairs where code >= $1::int order by code limit 1)`,
        [code],
      ],
    ]);
  }

  private async transaction(kind: WriteKind, statements: [string, unknown[]][]): Promise<WriteKind | null> {
    let c: pg.Client;
    try {
      c = await this.connection();
    } catch {
      this.interrupted++;
      return null;
    }
    try {
      await c.query('begin');
      for (const [sql, params] of statements) await c.query(sql, params);
      await c.query(kind === 'rollback' ? 'rollback' : 'commit');
      this.committed[kind]++;
      return kind;
    } catch (e) {
      // A restart cut the transaction (or, rarely, two key updates met): it did not happen.
      const code = (e as { code?: unknown }).code;
      if (code === '23505') {
        await c.query('rollback').catch(() => {});
        return null;
      }
      this.interrupted++;
      if (this.client === c) this.client = null;
      await c.end().catch(() => {});
      return null;
    }
  }

  /** Starts writing in the background, `pauseMs` between transactions (pacing only; results never depend on it). */
  start(pauseMs: number): void {
    if (this.loop) return;
    this.stopping = false;
    this.loop = (async () => {
      while (!this.stopping) {
        await this.step();
        this.attempts++;
        for (const p of this.progress) p();
        await sleep(pauseMs);
      }
    })();
  }

  /** Resolves once the background loop has attempted `n` more transactions. */
  async written(n: number): Promise<void> {
    const target = this.attempts + n;
    if (!this.loop) throw new Error('writer not started');
    await new Promise<void>((resolve) => {
      const check = (): void => {
        if (this.attempts < target) return;
        this.progress.delete(check);
        resolve();
      };
      this.progress.add(check);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    this.loop = null;
  }

  async close(): Promise<void> {
    await this.stop();
    await this.client?.end().catch(() => {});
    this.client = null;
  }
}
