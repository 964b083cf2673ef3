/**
 * The API keys this server process authenticated lately (docs/scaling.md, Idle runs): a request
 * with a key seen within `keyCacheSeconds` costs no statement. An entry is the key's SHA-256 (the
 * key itself is never kept) and its tenant, valid until the earlier of the cache's time to live and
 * the key's retirement. Unknown keys are never cached (they are rare, throttled by auth-throttle.ts,
 * and would let anyone fill the memory).
 *
 * What a cache costs is the delay of a revocation made elsewhere: a key revoked, rotated out or
 * deregistered through this process is forgotten at once (`forgetTenant`); through another server
 * process, or by hand in the database, it keeps working here for at most `keyCacheSeconds`.
 */
import type { Tenant } from './tenant-scope.js';

/** Most entries kept; past it the oldest go first (a Map keeps insertion order). */
const MAX_ENTRIES = 100_000;

export class KeyCache {
  private readonly entries = new Map<string, { tenant: Tenant; until: number }>();
  /** Moves at every forgetTenant: a lookup that began before it must not cache what it read. */
  private generation = 0;

  constructor(
    /** Time to live of an entry, ms; 0 turns the cache off. */
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The tenant of a key hash authenticated within the time to live, or undefined. */
  get(hash: Buffer): Tenant | undefined {
    if (this.ttlMs <= 0) return undefined;
    const id = hash.toString('hex');
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.until <= this.now()) {
      this.entries.delete(id);
      return undefined;
    }
    return entry.tenant;
  }

  /** To pass to `set`: taken before the database is asked. */
  get mark(): number {
    return this.generation;
  }

  /**
   * Remembers a key just authenticated by the database, with its retirement time if it has one;
   * unless keys were forgotten since `mark` was taken (the answer may predate a revocation).
   */
  set(hash: Buffer, tenant: Tenant, retireAt: Date | null, mark: number): void {
    if (this.ttlMs <= 0 || mark !== this.generation) return;
    const until = Math.min(this.now() + this.ttlMs, retireAt ? retireAt.getTime() : Number.POSITIVE_INFINITY);
    const id = hash.toString('hex');
    this.entries.delete(id);
    this.entries.set(id, { tenant, until });
    if (this.entries.size > MAX_ENTRIES) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  /** Forgets every key of a database (its keys were revoked, rotated out or deleted). */
  forgetTenant(tenant: Tenant): void {
    this.generation++;
    for (const [id, entry] of this.entries)
      if (entry.tenant.clientId === tenant.clientId && entry.tenant.databaseId === tenant.databaseId) this.entries.delete(id);
  }
}
