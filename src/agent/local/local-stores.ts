/**
 * The local database as the agent's rooms: one object per store, each owning its tables and SQL.
 * Built once per process over one pool by the composition root (Agent.create); a run and the
 * uploader take the narrow stores they use, never the whole.
 */
import type pg from 'pg';

import { type BatchHistory, PgBatchHistory } from './batch-history.js';
import { PgDeclarationStore } from './declaration-store.js';
import { type LocalTable, PgLocalCatalog } from './local-catalog.js';
import { type LocalSnapshot, openSnapshot } from './local-snapshot.js';
import { PgQuarantineStore, type QuarantineStore } from './quarantine-store.js';
import { PgTableStateStore } from './table-state-store.js';
import { PgTableTracking } from './table-tracking.js';

export interface LocalStores {
  catalog: PgLocalCatalog;
  tracking: PgTableTracking;
  state: PgTableStateStore;
  history: BatchHistory;
  quarantine: QuarantineStore;
  /** The declarations the server last accepted (declaration-store.ts). */
  declarations: PgDeclarationStore;
  /** Opens a read snapshot for one table's run (local-snapshot.ts). */
  openSnapshot(table: LocalTable): Promise<LocalSnapshot>;
}

export function pgLocalStores(pool: pg.Pool): LocalStores {
  return {
    catalog: new PgLocalCatalog(pool),
    tracking: new PgTableTracking(pool),
    state: new PgTableStateStore(pool),
    history: new PgBatchHistory(pool),
    quarantine: new PgQuarantineStore(pool),
    declarations: new PgDeclarationStore(pool),
    openSnapshot: (table) => openSnapshot(pool, table),
  };
}
