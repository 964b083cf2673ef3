/**
 * `tidemark status`'s line about offline sites (README, Offline sites): the last bundle the
 * database imported and how old the cloud copy is by it, asked of the server with the database's
 * own API key (GET /v1/customers/{c}/databases/{d}/bundle). Nothing for a database that never
 * imported one, nor from a server older than offline sites; a server that cannot answer leaves a
 * short note, never an error: status reports what it can.
 */

import { type BundleStatus, bundleStatusSchema } from '../shared/protocol/bundle.js';
import { buildPath, errorBodySchema } from '../shared/protocol.js';
import { humanSeconds } from './human.js';

const STATUS_TIMEOUT_MS = 30_000;

export interface BundleStatusTarget {
  serverUrl: string;
  clientId: string;
  databaseId: string;
  apiKey: string;
}

/** The server's answer, or why there is none. */
export async function fetchBundleStatus(target: BundleStatusTarget): Promise<{ status: BundleStatus } | { unavailable: string }> {
  const url = `${target.serverUrl.replace(/\/+$/, '')}${buildPath('tenantBundle', { clientId: target.clientId, databaseId: target.databaseId })}`;
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${target.apiKey}` }, signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause;
    return { unavailable: `server unreachable${cause?.code ? ` (${cause.code})` : ''}` };
  }
  let json: unknown;
  try {
    json = await res.json();
  } catch {
    json = undefined;
  }
  // A server from before offline sites has no such route: nothing to show.
  if (res.status === 404) return { status: { lastImport: null, ageSeconds: null } };
  if (!res.ok) {
    const error = errorBodySchema.safeParse(json);
    return { unavailable: error.success ? `${error.data.error.message} [${error.data.error.code}]` : `server answered ${res.status}` };
  }
  const parsed = bundleStatusSchema.safeParse(json);
  return parsed.success ? { status: parsed.data } : { unavailable: 'unexpected answer from the server' };
}

/** The lines `tidemark status` prints: none for a database that never imported a bundle. */
export function bundleStatusLines(answer: { status: BundleStatus } | { unavailable: string }): string[] {
  if ('unavailable' in answer) return [`offline bundles: unknown (${answer.unavailable})`];
  const last = answer.status.lastImport;
  if (!last) return [];
  const age = answer.status.ageSeconds === null ? '' : `; the cloud copy is ${humanSeconds(answer.status.ageSeconds)} old (as exported)`;
  return [
    `offline bundles: last imported ${last.importedAt} (exported ${last.createdAt}, sequence ${last.sequence}): ${last.rows} rows, ${last.deletes} deletes, ${last.bytes} bytes${age}`,
  ];
}
