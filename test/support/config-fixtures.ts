/** Config test helpers: the required agent keys and throwaway YAML files. */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Every key an agent config requires, valid. */
export const REQUIRED = {
  databaseUrl: 'postgres://u@h/db',
  serverUrl: 'http://127.0.0.1:8080',
  clientId: 'acme',
  databaseId: '6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10',
  apiKey: 'k',
};

/** Writes `text` to a new file in the temp directory; returns its path. */
export function tempYaml(text: string): string {
  const file = join(tmpdir(), `tidemark-test-${process.pid}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return file;
}
