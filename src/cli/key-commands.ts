/** Enrollment tokens, key rotation, key revocation and deregistration (README, Install; docs/security.md). */
import type { Command } from 'commander';

import { ConfigError } from '../shared/errors.js';
import { DEFAULT_OVERLAP_SECONDS, MAX_ENROLLMENT_SECONDS, MAX_ENROLLMENT_USES, MAX_OVERLAP_SECONDS } from '../shared/protocol/key-messages.js';
import { CLIENT_ID_PATTERN, parseDatabaseId } from '../shared/protocol.js';
import { adminConfigFrom, defaultConfigPath, EXIT_USAGE, ExitError, networkFrom } from './common.js';
import { createEnrollmentToken, deregisterDatabase, revokeKeys } from './key-client.js';
import { rotateKey } from './key-rotation.js';

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `90s`, `30m`, `12h`, `7d` (or plain seconds) in seconds, within [min, max]. */
export function parseDuration(text: string, what: string, min: number, max: number): number {
  const m = /^(\d+)\s*([smhd]?)$/.exec(text.trim());
  const seconds = m ? Number(m[1]) * (UNIT_SECONDS[m[2] || 's'] as number) : Number.NaN;
  if (!Number.isSafeInteger(seconds) || seconds < min || seconds > max)
    throw new ConfigError(`invalid ${what} ${JSON.stringify(text)}: use a duration such as 90s, 30m, 12h or 7d, from ${min} s to ${max / 86_400} days`);
  return seconds;
}

function clientIdOf(text: string): string {
  if (!CLIENT_ID_PATTERN.test(text)) throw new ConfigError(`invalid --client ${JSON.stringify(text)}: use lower-case letters, digits, - and _`);
  return text;
}

function databaseIdOf(text: string): string {
  try {
    return parseDatabaseId(text);
  } catch {
    throw new ConfigError(`invalid --database-id ${JSON.stringify(text)}: a UUID, as printed by register`);
  }
}

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

interface AdminFlags {
  config?: string;
  server?: string;
  adminKey?: string;
}

function adminOptions(cmd: Command): Command {
  return cmd
    .option('--config <file>', 'YAML file with serverUrl and adminKey (env TIDEMARK_CONFIG)')
    .option('--server <url>', 'tidemark server URL (env TIDEMARK_SERVER_URL)')
    .option('--admin-key <key>', 'admin API key (env TIDEMARK_ADMIN_KEY)');
}

export function keyCommands(program: Command): void {
  adminOptions(
    program
      .command('enroll-token')
      .description('create an enrollment token for a client (admin): `tidemark register --enroll-token` then registers a database without the admin key')
      .requiredOption('--client <id>', 'client the token registers databases for')
      .option('--expires <duration>', 'how long the token stays valid: 90s, 30m, 12h, 7d (at most 90d)', '7d')
      .option('--uses <n>', 'registrations the token allows', '1'),
  ).action(async (flags: AdminFlags & { client: string; expires: string; uses: string }) => {
    const clientId = clientIdOf(flags.client);
    const expiresSeconds = parseDuration(flags.expires, '--expires', 1, MAX_ENROLLMENT_SECONDS);
    const uses = Number(flags.uses);
    if (!Number.isSafeInteger(uses) || uses < 1 || uses > MAX_ENROLLMENT_USES)
      throw new ConfigError(`invalid --uses ${JSON.stringify(flags.uses)}: a whole number from 1 to ${MAX_ENROLLMENT_USES}`);
    const { serverUrl, adminKey } = adminConfigFrom(flags);
    print(await createEnrollmentToken(serverUrl, adminKey, clientId, expiresSeconds, uses));
  });

  program
    .command('rotate-key')
    .description(
      "replace the agent's API key: the server issues a new key, it is written into the config file (atomically, mode 0600), then confirmed; the old key stops working after the overlap",
    )
    .option(
      '--config <file>',
      `the agent's config file, holding serverUrl, clientId, databaseId and apiKey (default ${defaultConfigPath({})}; env TIDEMARK_CONFIG)`,
    )
    .option('--overlap <duration>', 'how long the old key keeps working: 0s, 30m, 1h, 7d (at most 30d)', `${DEFAULT_OVERLAP_SECONDS}s`)
    .action(async (flags: { config?: string; overlap: string }) => {
      const overlapSeconds = parseDuration(flags.overlap, '--overlap', 0, MAX_OVERLAP_SECONDS);
      print(await rotateKey(flags.config ?? defaultConfigPath(process.env), overlapSeconds, {}, (tls) => networkFrom(tls, process.env)));
    });

  adminOptions(
    program
      .command('revoke-key')
      .description(
        'revoke every key of a database now (admin) and print a new one: {"clientId","databaseId","keysRevoked","apiKey"}; put it in the agent\'s config',
      )
      .requiredOption('--client <id>', 'client id')
      .requiredOption('--database-id <uuid>', 'database id'),
  ).action(async (flags: AdminFlags & { client: string; databaseId: string }) => {
    const clientId = clientIdOf(flags.client);
    const databaseId = databaseIdOf(flags.databaseId);
    const { serverUrl, adminKey } = adminConfigFrom(flags);
    print(await revokeKeys(serverUrl, adminKey, clientId, databaseId));
  });

  adminOptions(
    program
      .command('deregister')
      .description('delete a registered database (admin): its keys, its table states and every replica row it sent; cannot be undone')
      .requiredOption('--client <id>', 'client id')
      .requiredOption('--database-id <uuid>', 'database id')
      .option('--yes', 'confirm the deletion'),
  ).action(async (flags: AdminFlags & { client: string; databaseId: string; yes?: boolean }) => {
    const clientId = clientIdOf(flags.client);
    const databaseId = databaseIdOf(flags.databaseId);
    const { serverUrl, adminKey } = adminConfigFrom(flags);
    if (!flags.yes)
      throw new ExitError(
        EXIT_USAGE,
        `deregister deletes database ${databaseId} of client ${clientId} and all its replica rows on ${serverUrl}; run again with --yes to confirm`,
      );
    print(await deregisterDatabase(serverUrl, adminKey, clientId, databaseId));
  });
}
