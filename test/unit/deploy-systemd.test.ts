/**
 * The systemd units in deploy/systemd: hardened as documented, and accepted by `systemd-analyze
 * verify` (which also reports unknown keys and bad values, on stderr with exit code 0) and rated
 * by `systemd-analyze security`. Without systemd-analyze the tool checks are skipped, saying so,
 * except under CI=true, where they fail: .ci/run installs the tool.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it, type TestContext } from 'vitest';

const UNITS_DIR = join(import.meta.dirname, '../../deploy/systemd');
const KINDS = ['agent', 'server'] as const;
/** Where `npm install -g tidemark` puts the command with the default prefix. */
const INSTALLED_BIN = '/usr/local/bin/tidemark';
/** systemd-analyze security rates 0 (locked down) to 10 (exposed); "OK" is below 4.5. */
const MAX_EXPOSURE = 2.5;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], cwd?: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '' } }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

function unitText(kind: (typeof KINDS)[number]): string {
  return readFileSync(join(UNITS_DIR, `tidemark-${kind}.service`), 'utf8');
}

/** Each `Key=value` of a section, in order (a key may repeat). */
function directives(text: string, section: string): [string, string][] {
  const out: [string, string][] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header?.[1]) current = header[1];
    else if (current === section) {
      const eq = line.indexOf('=');
      out.push([line.slice(0, eq), line.slice(eq + 1)]);
    }
  }
  return out;
}

let analyzeAvailable: boolean | undefined;

/** True when systemd-analyze runs here; else skips the test (printing why), or fails it under CI. */
async function requireSystemdAnalyze(ctx: TestContext): Promise<boolean> {
  analyzeAvailable ??= (await run('systemd-analyze', ['--version'])).code === 0;
  if (analyzeAvailable) return true;
  const why = 'systemd-analyze not found (apt-get install systemd): the systemd units were not verified';
  if (process.env.CI === 'true') throw new Error(`${why}; CI must have it`);
  process.stderr.write(`SKIPPED: ${why}\n`);
  ctx.skip(why);
  return false;
}

describe('systemd units', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-units-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The unit with ExecStart pointing at an executable that exists here (verify checks it). */
  function stagedUnit(kind: (typeof KINDS)[number]): string {
    const path = join(dir, `tidemark-${kind}.service`);
    writeFileSync(path, unitText(kind).replaceAll(INSTALLED_BIN, process.execPath));
    return path;
  }

  for (const kind of KINDS) {
    it(`tidemark-${kind}.service runs the command with /etc/tidemark config, a secrets env file, a restart policy and a sandbox`, () => {
      const service = new Map(directives(unitText(kind), 'Service'));
      expect(service.get('ExecStart')).toBe(`${INSTALLED_BIN} ${kind} --config /etc/tidemark/${kind}.yaml`);
      expect(service.get('EnvironmentFile')).toBe(`-/etc/tidemark/${kind}.env`);
      expect(service.get('Restart')).toBe('always');
      expect(service.get('RestartPreventExitStatus')).toBe('78'); // an invalid configuration: restarting does not help
      expect(service.get('DynamicUser')).toBe('yes');
      expect(service.get('ProtectSystem')).toBe('strict');
      expect(service.get('ProtectHome')).toBe('yes');
      expect(service.get('NoNewPrivileges')).toBe('yes');
      expect(service.get('CapabilityBoundingSet')).toBe('');
      expect(directives(unitText(kind), 'Install')).toContainEqual(['WantedBy', 'multi-user.target']);
    });

    it(`tidemark-${kind}.service passes systemd-analyze verify with no warning`, async (ctx) => {
      if (!(await requireSystemdAnalyze(ctx))) return;
      const r = await run('systemd-analyze', ['verify', '--man=no', stagedUnit(kind)], dir);
      expect(r.stderr.trim()).toBe('');
      expect(r.code).toBe(0);
    });

    it(`tidemark-${kind}.service is rated exposure <= ${MAX_EXPOSURE} by systemd-analyze security`, async (ctx) => {
      if (!(await requireSystemdAnalyze(ctx))) return;
      const r = await run('systemd-analyze', ['security', '--offline=yes', stagedUnit(kind)], dir);
      expect(r.code, r.stderr).toBe(0);
      const level = /Overall exposure level for \S+: ([0-9.]+)/.exec(r.stdout)?.[1];
      expect(level, r.stdout).toBeDefined();
      expect(Number(level)).toBeLessThanOrEqual(MAX_EXPOSURE);
    });
  }
});
