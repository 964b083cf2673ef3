/**
 * The settle an idle run carries on its declaration (PUT .../tables/{table}, field `idleSettle`):
 * an agent whose snapshot holds no row the server may lack (nothing at or above the settled horizon
 * it last saw) moves the horizon in the same request that declares the table, instead of an upload
 * with an empty body. The server applies it only if its state row is still the one the agent saw
 * (`expected`) and holds no version above the agent's (`maxVersion`): one conditional UPDATE.
 * A server that does not know the field ignores it (zod strips unknown keys), and the answer then
 * lacks `idleSettled`: the agent settles the old way. docs/scaling.md, Idle runs.
 */
import { z } from 'zod';

import { versionSchema } from './identifiers.js';
import { MAX_XIP } from './limits.js';
import { tableSummarySchema } from './table-messages.js';

/** A settled horizon: the snapshot's xmin, xmax and in-progress list. */
export const horizonSchema = z.object({
  settledVersion: versionSchema,
  settledXmax: versionSchema.nullable(),
  settledXip: z.array(versionSchema).max(MAX_XIP),
});
export type Horizon = z.infer<typeof horizonSchema>;

export const idleSettleSchema = z.object({
  /** The server's horizon as the agent last saw it; the settle applies only if it is still this. */
  expected: horizonSchema,
  /** The new horizon (the run's snapshot). */
  settle: horizonSchema.extend({ settledXmax: versionSchema }),
  /** The snapshot's max version (null: no rows); the server must hold none above it. */
  maxVersion: versionSchema.nullable(),
});
export type IdleSettle = z.infer<typeof idleSettleSchema>;

/** The body of PUT .../tables/{table}: the declaration, optionally with an idle settle. */
export const declareBodySchema = z.object({ idleSettle: idleSettleSchema.optional() });

/** PUT .../tables/{table} answer: the summary, and whether the idle settle was applied. */
export const declareResultSchema = tableSummarySchema.extend({ idleSettled: z.boolean().optional() });
export type DeclareResult = z.infer<typeof declareResultSchema>;
