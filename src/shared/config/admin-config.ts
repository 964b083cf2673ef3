import { z } from 'zod';

import { type ConfigSources, type EnvMap, loadConfig } from './load-config.js';

/**
 * What the admin commands (`register`, `resync`) need: the server and the admin key. Other keys in
 * the file (an agent's or a server's config) are ignored, so one file can serve several commands.
 */
export const adminConfigSchema = z.looseObject({
  /** Base URL of the tidemark server. */
  serverUrl: z.url(),
  /** The server's admin key. */
  adminKey: z.string().min(1),
});

export type AdminConfig = z.output<typeof adminConfigSchema>;

const ADMIN_ENV: EnvMap = { TIDEMARK_SERVER_URL: ['serverUrl'], TIDEMARK_ADMIN_KEY: ['adminKey'] };

export function loadAdminConfig(sources: ConfigSources): Readonly<AdminConfig> {
  return loadConfig(adminConfigSchema, ADMIN_ENV, sources, { serverUrl: '--server or TIDEMARK_SERVER_URL', adminKey: '--admin-key or TIDEMARK_ADMIN_KEY' });
}

/** What `track` and `untrack` need: the local database. Other keys in the file are ignored. */
export const trackConfigSchema = z.looseObject({ databaseUrl: z.string().min(1) });

export function loadTrackConfig(sources: ConfigSources): Readonly<z.output<typeof trackConfigSchema>> {
  return loadConfig(trackConfigSchema, { TIDEMARK_DATABASE_URL: ['databaseUrl'] }, sources, { databaseUrl: '--database or TIDEMARK_DATABASE_URL' });
}
