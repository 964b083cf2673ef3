/**
 * compose.yaml and deploy/docker/*.Dockerfile, checked statically (no Docker daemon in CI): the
 * files they mount or copy exist, and addresses agree across compose.yaml, config/prometheus.yml,
 * the Grafana provisioning and the images.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const ROOT = join(import.meta.dirname, '../..');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: string[] | Record<string, unknown>;
  network_mode?: string;
  command?: string[];
}

const read = (path: string): string => readFileSync(join(ROOT, path), 'utf8');
const compose = parse(read('compose.yaml')) as { services: Record<string, Service>; volumes: Record<string, unknown> };
const services = compose.services;

function service(name: string): Service {
  const s = services[name];
  if (!s) throw new Error(`compose.yaml has no service ${name}`);
  return s;
}

/** Bind mounts of a service: `./host:container[:ro]` as [host, container]. */
function binds(s: Service): [string, string][] {
  return (s.volumes ?? []).filter((v) => v.startsWith('./')).map((v) => v.split(':').slice(0, 2) as [string, string]);
}

function bindTarget(s: Service, host: string): string {
  const b = binds(s).find(([h]) => h === host);
  if (!b) throw new Error(`${host} is not mounted`);
  return b[1];
}

/** `HOST:PORT` -> PORT. */
const portOf = (address: string): string => address.slice(address.lastIndexOf(':') + 1);

describe('compose.yaml', () => {
  it('starts the server, PostgreSQL, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['grafana', 'postgres', 'prometheus', 'server']);
  });

  it('mounts, builds and depends only on what exists', () => {
    for (const [name, s] of Object.entries(services)) {
      for (const [host] of binds(s)) expect(existsSync(join(ROOT, host)), `${name} mounts ${host}`).toBe(true);
      for (const v of s.volumes ?? []) if (!v.startsWith('./')) expect(compose.volumes, `${name} uses volume ${v}`).toHaveProperty(v.split(':')[0] ?? '');
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) expect(services, `${name} depends on ${d}`).toHaveProperty(d);
      if (s.build) expect(existsSync(join(ROOT, s.build.context, s.build.dockerfile))).toBe(true);
    }
    expect(service('server').build?.dockerfile).toBe('deploy/docker/server.Dockerfile');
  });

  it('publishes on loopback only, and the server on the port it listens on', () => {
    for (const s of Object.values(services)) for (const p of s.ports ?? []) expect(p).toMatch(/^127\.0\.0\.1:/);
    const server = service('server');
    const listenPort = portOf(server.environment?.TIDEMARK_LISTEN ?? '');
    expect(server.ports).toContain(`127.0.0.1:${listenPort}:${listenPort}`);
  });

  it('requires an admin key instead of defaulting one', () => {
    expect(service('server').environment?.TIDEMARK_ADMIN_KEY).toMatch(/^\$\{TIDEMARK_ADMIN_KEY:\?.+\}$/);
  });

  it('connects the server to the compose PostgreSQL as the plain role the init script creates', () => {
    const url = new URL(service('server').environment?.TIDEMARK_DATABASE_URL ?? '');
    expect(url.hostname).toBe('postgres');
    expect(url.pathname).toBe(`/${service('postgres').environment?.POSTGRES_DB}`);
    const createRole = read('deploy/compose/postgres-init.sh')
      .split('\n')
      .find((l) => l.startsWith(`create role ${url.username} `));
    expect(createRole).toMatch(/ login /);
    expect(createRole).not.toMatch(/superuser|bypassrls/i);
    expect(bindTarget(service('postgres'), './deploy/compose/postgres-init.sh')).toMatch(/^\/docker-entrypoint-initdb\.d\//);
  });

  it("runs Prometheus on the repository's config/prometheus.yml and alert rules, reaching the server at its scrape target", () => {
    const prometheus = service('prometheus');
    // 127.0.0.1 in config/prometheus.yml is the server's namespace.
    expect(prometheus.network_mode).toBe('service:server');
    const configPath = bindTarget(prometheus, './config/prometheus.yml');
    expect(prometheus.command).toContain(`--config.file=${configPath}`);
    const config = parse(read('config/prometheus.yml')) as {
      rule_files: string[];
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
    };
    const configDir = configPath.slice(0, configPath.lastIndexOf('/'));
    for (const rules of config.rule_files) expect(binds(prometheus)).toContainEqual([`./config/${rules}`, `${configDir}/${rules}`]);
    const serverJob = config.scrape_configs.find((j) => j.job_name === 'tidemark-server');
    const listenPort = portOf(service('server').environment?.TIDEMARK_LISTEN ?? '');
    expect(serverJob?.static_configs.flatMap((c) => c.targets)).toContain(`127.0.0.1:${listenPort}`);
    const webPort = portOf(prometheus.command?.find((c) => c.startsWith('--web.listen-address='))?.split('=')[1] ?? '');
    expect(service('server').ports).toContain(`127.0.0.1:${webPort}:${webPort}`);
  });

  it("provisions Grafana with that Prometheus and the repository's dashboards", () => {
    const grafana = service('grafana');
    const provisioning = bindTarget(grafana, './deploy/grafana/provisioning');
    expect(provisioning).toBe('/etc/grafana/provisioning');
    const ds = parse(read('deploy/grafana/provisioning/datasources/prometheus.yaml')) as { datasources: { type: string; url: string; isDefault: boolean }[] };
    const webPort = portOf(
      service('prometheus')
        .command?.find((c) => c.startsWith('--web.listen-address='))
        ?.split('=')[1] ?? '',
    );
    expect(ds.datasources).toContainEqual(expect.objectContaining({ type: 'prometheus', url: `http://server:${webPort}`, isDefault: true }));
    const providers = parse(read('deploy/grafana/provisioning/dashboards/tidemark.yaml')) as { providers: { type: string; options: { path: string } }[] };
    expect(providers.providers[0]?.options.path).toBe(bindTarget(grafana, './dashboards'));
    expect(
      readdirSync(join(ROOT, 'dashboards'))
        .filter((f) => f.endsWith('.json'))
        .sort(),
    ).toEqual(['tidemark-agent.json', 'tidemark-fleet.json', 'tidemark-server.json']);
  });
});

describe('Dockerfiles', () => {
  const ignored = read('.dockerignore')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

  for (const [kind, envKey] of [
    ['server', 'TIDEMARK_LISTEN'],
    ['agent', 'TIDEMARK_METRICS_LISTEN'],
  ] as const) {
    it(`${kind}.Dockerfile is multi-stage, ships production dependencies only and runs as a non-root user`, () => {
      const text = read(`deploy/docker/${kind}.Dockerfile`).replace(/\\\n/g, ' ');
      const lines = text.split('\n').map((l) => l.trim());
      const stages = lines.filter((l) => l.startsWith('FROM '));
      expect(stages.length).toBeGreaterThanOrEqual(3);
      const final = lines.slice(lines.lastIndexOf(stages.at(-1) ?? ''));
      const user = final.find((l) => l.startsWith('USER '))?.split(/\s+/)[1];
      expect(user).toBeDefined();
      expect(['root', '0']).not.toContain(user);
      // The final stage takes node_modules from a stage that installed without dev dependencies.
      expect(text).toMatch(/npm ci --omit=dev/);
      expect(final).toContainEqual(expect.stringMatching(/^COPY --from=deps \S+\/node_modules /));
      expect(final.filter((l) => l.startsWith('COPY ') && l.includes('node_modules') && !l.includes('--from='))).toEqual([]);
      // Every file copied from the build context exists and is not excluded by .dockerignore.
      for (const l of lines.filter((x) => x.startsWith('COPY ') && !x.includes('--from='))) {
        const sources = l.split(/\s+/).slice(1, -1);
        for (const src of sources) {
          expect(existsSync(join(ROOT, src)), `${kind}.Dockerfile copies ${src}`).toBe(true);
          expect(ignored, `${src} is excluded from the build context`).not.toContain(src);
        }
      }
      expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist']));
      // It runs the package's bin, listening where it says it does.
      expect(final).toContainEqual('ENTRYPOINT ["node", "dist/cli/main.js"]');
      expect(final).toContainEqual(`CMD ["${kind}"]`);
      const env = /ENV [^\n]*\b(TIDEMARK_\w+)=(\S+)/g;
      const listen = [...text.matchAll(env)].find((m) => m[1] === envKey)?.[2];
      expect(listen, `${envKey} set in the image`).toBeDefined();
      expect(final).toContainEqual(`EXPOSE ${portOf(listen ?? '')}`);
    });
  }
});
