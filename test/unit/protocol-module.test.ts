import { describe, expect, it } from 'vitest';

import {
  adminPaths,
  buildPath,
  decodeCopyField,
  encodeCopyField,
  parseJsonBody,
  ROUTES,
  type RouteName,
  tablePath,
  tableRoutePath,
  tableSummarySchema,
} from '../../src/shared/protocol.js';

const SUMMARY = {
  table: 'public.items',
  rowCount: 2,
  maxVersion: '12',
  settledVersion: '10',
  settledXmax: '11',
  settledXip: [],
  maxModified: null,
  updatedAt: null,
  resync: null,
};

describe('routes', () => {
  it('builds every path from the template the server registers, one encoded segment per parameter', () => {
    const params = { clientId: 'acme', databaseId: 'D1', table: '"Wé""ird"."a/b"' };
    for (const name of Object.keys(ROUTES) as RouteName[]) {
      const path = buildPath(name, params);
      // Matching the built path against its own template gives the parameters back.
      const pattern = new RegExp(`^${ROUTES[name].replace(/:[A-Za-z]+/g, '([^/]+)')}$`);
      const m = pattern.exec(path);
      expect(m, name).not.toBeNull();
      const names = [...ROUTES[name].matchAll(/:([A-Za-z]+)/g)].map((x) => x[1] as keyof typeof params);
      names.forEach((n, i) => {
        expect(decodeURIComponent(m?.[i + 1] ?? '')).toBe(params[n]);
      });
    }
  });

  it('gives the agent and the admin CLI the paths the server serves', () => {
    const table = { schema: 'Wé"ird', name: 'a.b' };
    expect(tablePath('acme', 'd', table)).toBe(`/v1/customers/acme/databases/d/tables/${encodeURIComponent('"Wé""ird"."a.b"')}`);
    expect(tableRoutePath('tableManifest', 'acme', 'd', table)).toBe(`${tablePath('acme', 'd', table)}/manifest`);
    expect(adminPaths.databases('acme')).toBe('/v1/admin/customers/acme/databases');
    expect(adminPaths.resync('acme', 'd')).toBe('/v1/admin/customers/acme/databases/d/resync');
    expect(adminPaths.database('acme', 'd')).toBe('/v1/admin/customers/acme/databases/d');
    expect(adminPaths.tenants()).toBe('/v1/admin/tenants');
  });
});

describe('parsing messages by their schemas', () => {
  it('returns typed values and refuses other shapes with a 400 naming the path', () => {
    expect(parseJsonBody(tableSummarySchema, JSON.stringify(SUMMARY), 'summary').settledVersion).toBe('10');
    expect(() => parseJsonBody(tableSummarySchema, '{"table": 1}', 'summary')).toThrow(/invalid summary: table:/);
    expect(() => parseJsonBody(tableSummarySchema, 'not json', 'summary')).toThrow(/invalid summary: not JSON/);
    try {
      parseJsonBody(tableSummarySchema, '[]');
    } catch (e) {
      expect(e).toMatchObject({ status: 400, code: 'TM_REQUEST_INVALID' });
    }
  });
});

describe('COPY text codec', () => {
  it('round-trips every escaped character and null', () => {
    for (const v of ['plain', 'tab\there', 'line\nbreak\r', 'back\\slash', '\\.', '\b\f\v', '', null]) expect(decodeCopyField(encodeCopyField(v))).toBe(v);
    expect(encodeCopyField('a\tb\\')).toBe('a\\tb\\\\');
  });
});
