/**
 * Boots one embedded PostgreSQL for the whole run (or uses TIDEMARK_TEST_DATABASE_URL), and migrates
 * a template database that every test's server database is cloned from.
 */
import pg from 'pg';
import type { TestProject } from 'vitest/node';

import { startEmbeddedCluster } from '../../src/cli/embedded-cluster.js';
import { migrate } from '../../src/server/migrations.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgBaseUrl: string;
  }
}

export const SERVER_TEMPLATE = 'tidemark_server_template';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let baseUrl: string;
  let stop = async (): Promise<void> => {};
  const external = process.env.TIDEMARK_TEST_DATABASE_URL;
  if (external) {
    const u = new URL(external);
    u.pathname = '/';
    baseUrl = u.toString();
  } else {
    const cluster = await startEmbeddedCluster();
    baseUrl = cluster.baseUrl;
    stop = () => cluster.stop();
  }
  const admin = new pg.Client({ connectionString: `${baseUrl}postgres` });
  await admin.connect();
  await admin.query(`drop database if exists ${SERVER_TEMPLATE}`);
  await admin.query(`create database ${SERVER_TEMPLATE}`);
  await admin.end();
  const pool = new pg.Pool({ connectionString: `${baseUrl}${SERVER_TEMPLATE}` });
  await migrate(pool);
  await pool.end();
  project.provide('pgBaseUrl', baseUrl);
  return stop;
}
