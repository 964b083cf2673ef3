/**
 * The declaration of a table at the start of each run, and what a local schema change since the
 * last accepted declaration means (issue 8 item 1; README, Schema changes):
 *  - a column added without a default: nothing more (NULL on both sides);
 *  - added with a constant default: the stored rows hold it without a rewrite and without firing
 *    the trigger (versions do not move), so the declaration carries the value (`addedDefault`)
 *    and the server sets this database's existing rows to it, in the same transaction;
 *  - added with a volatile default (a rewrite, every row different, no version moved), or a type
 *    change that may change the values' text (a numeric scale up): the whole table is compared
 *    and repaired right after (a full verification, owed until it finishes);
 *  - a dropped column, a widening that keeps the text (int to bigint, varchar to text), a key
 *    change: the server's business (it evolves the replica, or blocks this table for this database).
 */
import { textStable } from '../shared/column-widening.js';
import type { Logger } from '../shared/logger.js';
import type { TableDeclaration, TableName } from '../shared/protocol.js';
import type { LocalTable } from './local/local-catalog.js';
import type { TableStateRow } from './local/table-state-store.js';
import type { TableSyncDeps } from './run-context.js';

export interface PreparedDeclaration {
  table: LocalTable;
  plan: ChangePlan;
  /** The run's state, with a full verification owed when the change needs one. */
  state: TableStateRow;
  /** The local shape is the one the server last accepted. */
  unchanged: boolean;
}

export interface ChangePlan {
  declaration: TableDeclaration;
  /** Why the whole table must be compared, or null. */
  verify: string | null;
}

/** The declaration to send, given the last accepted one, and whether the change needs a full verification. */
async function planChange(deps: TableSyncDeps, table: LocalTable, accepted: TableDeclaration | null): Promise<ChangePlan> {
  const current = table.declaration;
  if (!accepted || JSON.stringify(accepted) === JSON.stringify(current)) return { declaration: current, verify: null };
  const before = new Map(accepted.columns.map((c) => [c.name, c]));
  const added = current.columns.filter((c) => !before.has(c.name)).map((c) => c.name);
  const how = added.length ? await deps.local.catalog.addedColumns(table.name, added) : new Map<string, { hasDefault: boolean; missing: string | null }>();
  const reasons: string[] = [];
  const columns = current.columns.map((c) => {
    const old = before.get(c.name);
    if (old) {
      if (old.type !== c.type && !textStable(old.type, c.type)) reasons.push(`column ${c.name} changed from ${old.type} to ${c.type}`);
      return c;
    }
    const h = how.get(c.name);
    if (h?.missing != null) return { ...c, addedDefault: h.missing };
    if (h?.hasDefault) reasons.push(`column ${c.name} was added with a volatile default`);
    return c;
  });
  return { declaration: { columns, keyColumns: current.keyColumns }, verify: reasons.length ? reasons.join('; ') : null };
}

/** Describes the table, declares it (the server evolves the replica or refuses), and records what it accepted. */
/**
 * Before a run declares its table: the local shape, what to declare (with the values of columns
 * added with a constant default), and the run's state (a full verification owed when the change
 * may have changed stored values). `acceptDeclaration` records it once the server accepted it.
 */
export async function prepareDeclaration(deps: TableSyncDeps, name: TableName, state: TableStateRow, log: Logger): Promise<PreparedDeclaration> {
  const { local } = deps;
  const table = await local.catalog.describe(name);
  const accepted = await local.declarations.read(name);
  const plan = await planChange(deps, table, accepted);
  let runState = state;
  if (plan.verify) {
    log.info({ why: plan.verify }, 'the table changed locally in a way that may change stored values; comparing the whole table');
    // Owed until a whole-table verification finishes, whatever happens to this run.
    await local.state.save(name, { fullVerifyPending: true });
    runState = { ...state, fullVerifyPending: true };
  }
  return { table, plan, state: runState, unchanged: JSON.stringify(accepted) === JSON.stringify(table.declaration) };
}

/** The server accepted the declaration: the next run compares the local shape with this one. */
export async function acceptDeclaration(deps: TableSyncDeps, prepared: PreparedDeclaration): Promise<void> {
  if (!prepared.unchanged) await deps.local.declarations.save(prepared.table.name, prepared.table.declaration);
}
