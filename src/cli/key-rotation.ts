/**
 * `tidemark rotate-key`: the agent's side of a key rotation (server side and crash analysis:
 * src/server/key-store.ts). Three steps, each leaving a working key if the process dies after it:
 *   1. ask the server for a new key, authenticated by the current one (the new one is pending);
 *   2. write the new key into the config file (atomic: temporary file + rename, mode 0600);
 *   3. confirm the new key, authenticated by it: the old key retires after the overlap window.
 * Dead after 1: the file holds the old key, which works; the next rotation replaces the pending key.
 * Dead after 2: the file holds the new key, which works while pending; the next rotation (or this
 * one run again) confirms it first.
 */
import { z } from 'zod';

import { configValueOf, writeConfigValues } from '../agent/config-file.js';
import type { TransportOptions } from '../agent/http-transport.js';
import { agentConfigSchema, clientIdConfigSchema, databaseIdConfigSchema, tlsConfigSchema } from '../shared/config/agent-config.js';
import { loadConfig } from '../shared/config/load-config.js';
import { secretString } from '../shared/config/redact.js';
import { serverConfigSchema } from '../shared/config/server-config.js';
import { ConfigError } from '../shared/errors.js';
import { confirmKey, issueKey, type KeyHolder } from './key-client.js';

/** What a rotation reads from the agent's config file. */
const keyHolderSchema = z.object({
  serverUrl: z.url(),
  clientId: clientIdConfigSchema,
  databaseId: databaseIdConfigSchema,
  apiKey: secretString(),
  tls: tlsConfigSchema,
});

/** Points where a test stops a rotation, as a crash would. */
export interface RotationHooks {
  /** After the server issued the new key, before it is written. */
  afterIssue?: () => void;
  /** After the temporary file is written, before it replaces the config file. */
  beforeReplace?: () => void;
  /** After the config file holds the new key, before it is confirmed. */
  afterStore?: () => void;
}

export interface RotationResult {
  clientId: string;
  databaseId: string;
  config: string;
  /** Keys that stop working at `retireAt`. */
  keysRetiring: number;
  retireAt: string;
}

/** Reads the database and its key from the agent's config file (the key must be written in it, not an env reference). */
export function keyHolderFrom(file: string): KeyHolder & { tls: z.output<typeof tlsConfigSchema> } {
  const written = configValueOf(file, 'apiKey');
  if (typeof written !== 'string')
    throw new ConfigError(
      written
        ? `apiKey in ${file} is an environment reference (${written.env}): rotate-key writes the new key into the config file, so it must hold the key itself (mode 0600)`
        : `apiKey is required in ${file}: rotate-key rotates the key its config file holds`,
    );
  return loadConfig(keyHolderSchema, {}, { file, env: {}, flags: {} }, {}, { alsoInFiles: [agentConfigSchema, serverConfigSchema] });
}

export async function rotateKey(
  file: string,
  overlapSeconds: number,
  hooks: RotationHooks = {},
  networkOf: (tls: z.output<typeof tlsConfigSchema>) => TransportOptions | undefined = () => undefined,
): Promise<RotationResult> {
  const current = keyHolderFrom(file);
  const network = networkOf(current.tls);
  const { apiKey } = await issueKey(current, network);
  hooks.afterIssue?.();
  writeConfigValues(file, { apiKey }, hooks.beforeReplace ? { onReplace: hooks.beforeReplace } : {});
  hooks.afterStore?.();
  const confirmed = await confirmKey({ ...current, apiKey }, overlapSeconds, network);
  return { clientId: current.clientId, databaseId: current.databaseId, config: file, ...confirmed };
}
