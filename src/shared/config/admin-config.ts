import { z } from 'zod';

import { agentConfigSchema, pgEnvDefaults } from './agent-config.js';
import { type ConfigSources, type EnvMap, loadConfig } from './load-config.js';
import { connectionString, secretString } from './redact.js';
import { serverConfigSchema } from './server-config.js';

/** The keys another command's config may hold in the same file (ignored, but not unknown). */
const OTHER_COMMANDS = [agentConfigSchema, serverConfigSchema];

/**
 * What the admin commands (`register`, `resync`) need: the server and the admin key. Other
 * commands' keys in the file (an agent's or a server's config) are ignored, so one file can serve
 * several commands; a key no command knows is an error.
 */
export const adminConfigSchema = z.object({
  /** Base URL of the tidemark server. */
  serverUrl: z.url(),
  /** The server's admin key. A secret: never printed. */
  adminKey: secretString(),
});

export type AdminConfig = z.output<typeof adminConfigSchema>;

const ADMIN_ENV: EnvMap = { TIDEMARK_SERVER_URL: ['serverUrl'], TIDEMARK_ADMIN_KEY: ['adminKey'] };

export function loadAdminConfig(sources: ConfigSources): Readonly<AdminConfig> {
  return loadConfig(
    adminConfigSchema,
    ADMIN_ENV,
    sources,
    { serverUrl: '--server or TIDEMARK_SERVER_URL', adminKey: '--admin-key or TIDEMARK_ADMIN_KEY' },
    { alsoInFiles: OTHER_COMMANDS },
  );
}

/** What `track` and `untrack` need: the local database. Other commands' keys in the file are ignored. */
export const trackConfigSchema = z.object({ databaseUrl: connectionString() });

export function loadTrackConfig(sources: ConfigSources): Readonly<z.output<typeof trackConfigSchema>> {
  return loadConfig(
    trackConfigSchema,
    { TIDEMARK_DATABASE_URL: ['databaseUrl'] },
    sources,
    { databaseUrl: '--database or TIDEMARK_DATABASE_URL' },
    { alsoInFiles: OTHER_COMMANDS, defaults: pgEnvDefaults(sources.env) },
  );
}
