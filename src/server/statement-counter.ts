/**
 * Counts the SQL statements and transactions the server's pool sends (a seam for tests and the
 * fleet benchmark: what one request costs the database, without pg_stat_statements). A statement
 * outside `begin` ... `commit` is a transaction of its own, as PostgreSQL counts it.
 */
import type pg from 'pg';

export interface StatementCounts {
  statements: number;
  transactions: number;
}

export class StatementCounter {
  statements = 0;
  transactions = 0;
  /** Every statement's text, when `keepTexts` (the Citus compatibility test reads them). */
  readonly texts: string[] = [];
  private readonly open = new WeakSet<pg.ClientBase>();

  constructor(private readonly keepTexts = false) {}

  snapshot(): StatementCounts {
    return { statements: this.statements, transactions: this.transactions };
  }

  reset(): void {
    this.statements = 0;
    this.transactions = 0;
    this.texts.length = 0;
  }

  /** Counts every query `client` sends from now on (attach on the pool's 'connect'). */
  attach(client: pg.ClientBase): void {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    const counted = (...args: unknown[]): unknown => {
      const first = args[0];
      const text = typeof first === 'string' ? first : ((first as { text?: unknown } | null)?.text ?? '');
      this.count(client, typeof text === 'string' ? text : '');
      return query(...args);
    };
    // pg's query is overloaded; the wrapper forwards whatever it is given, unchanged.
    client.query = counted as typeof client.query;
  }

  private count(client: pg.ClientBase, text: string): void {
    this.statements++;
    if (this.keepTexts) this.texts.push(text);
    const word = /^\s*(\w+)/.exec(text)?.[1]?.toLowerCase();
    if (word === 'begin' || word === 'start') {
      this.open.add(client);
      this.transactions++;
    } else if (word === 'commit' || word === 'rollback') this.open.delete(client);
    else if (!this.open.has(client)) this.transactions++;
  }
}
