/**
 * Writes credentials into an agent's YAML config file without ever leaving it half written: the new
 * text goes to a temporary file in the same directory (mode 0600, flushed to disk), which then
 * replaces the file by rename, an atomic step on POSIX file systems and on NTFS. A crash leaves the
 * old file or the new one, never a mix. Other keys and comments are kept.
 */
import { closeSync, fchownSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { isMap, parseDocument } from 'yaml';

import { ConfigError } from '../shared/errors.js';

/** Mode of a file that holds a key: read and write for its owner only. */
export const CONFIG_FILE_MODE = 0o600;

/** The file's text, or undefined when it does not exist. */
function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/**
 * Sets top-level `values` in the YAML file (created when missing), atomically, mode 0600.
 * `onReplace` runs between writing the temporary file and renaming it (tests inject a crash there).
 */
export function writeConfigValues(file: string, values: Readonly<Record<string, string>>, options: { onReplace?: () => void } = {}): void {
  const text = readIfExists(file);
  const owner = text === undefined ? undefined : statSync(file);
  const doc = parseDocument(text ?? '');
  if (doc.errors.length) throw new ConfigError(`config file ${file} is not valid YAML: ${doc.errors[0]?.message.split('\n')[0]}`);
  if (doc.contents !== null && !isMap(doc.contents)) throw new ConfigError(`config file ${file} must hold a mapping`);
  for (const [k, v] of Object.entries(values)) doc.set(k, v);
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${Date.now()}.tmp`);
  try {
    const fd = openSync(tmp, 'wx', CONFIG_FILE_MODE);
    try {
      // Run as root on a file the agent's user owns: the new file keeps that owner, or the agent could not read it.
      if (owner && process.getuid?.() === 0) fchownSync(fd, owner.uid, owner.gid);
      writeSync(fd, doc.toString());
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    options.onReplace?.();
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof ConfigError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code) throw new ConfigError(`cannot write config file ${file}: ${code}`, { cause: e });
    throw e;
  }
  // The rename is durable once the directory is flushed (POSIX; Windows has no directory handles to flush).
  if (process.platform !== 'win32') {
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  }
}

/** The file's top-level `key` as written: a string, an environment reference `{ env }`, or undefined. */
export function configValueOf(file: string, key: string): string | { env: string } | undefined {
  const text = readIfExists(file);
  if (text === undefined) return undefined;
  const value: unknown = parseDocument(text).toJS()?.[key];
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { env?: unknown }).env === 'string') return { env: (value as { env: string }).env };
  return undefined;
}

/** The file's top-level `key` as parsed (any YAML value), or undefined when the file or the key is absent. */
export function configSectionOf(file: string, key: string): unknown {
  const text = readIfExists(file);
  return text === undefined ? undefined : parseDocument(text).toJS()?.[key];
}

/**
 * The API key as the config file holds it now, re-read when the file changed (by mtime and size):
 * a running agent follows `tidemark rotate-key` without a restart. Only when the key in use came
 * from that file (`initial` equals what it holds); otherwise (flags, TIDEMARK_API_KEY) it is fixed.
 */
export function fileKeyProvider(file: string | undefined, initial: string): () => string {
  if (file === undefined || configValueOf(file, 'apiKey') !== initial) return () => initial;
  let key = initial;
  let seen = fileStamp(file);
  return () => {
    const stamp = fileStamp(file);
    if (stamp !== seen) {
      seen = stamp;
      try {
        const now = configValueOf(file, 'apiKey');
        if (typeof now === 'string' && now !== '') key = now;
      } catch {
        // unreadable for a moment: keep the key in use
      }
    }
    return key;
  };
}

function fileStamp(file: string): string {
  try {
    const s = statSync(file);
    return `${s.mtimeMs}:${s.size}:${s.ino}`;
  } catch {
    return 'missing';
  }
}
