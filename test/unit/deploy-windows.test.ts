/**
 * deploy/windows/tidemark-agent.xml, the WinSW service definition (docs/deploy.md): checked as far
 * as a Linux CI can. The XML is well formed; the command it runs is the package's bin with options
 * the real CLI accepts; the service runs as LocalService, restarts on failure, and gives a stop
 * long enough for the run in flight. Not checked here: WinSW itself and the Windows service manager.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { buildProgram } from '../../src/cli/program.js';
import { loadAgentConfig } from '../../src/shared/config/agent-config.js';

const ROOT = join(import.meta.dirname, '../..');
const xml = readFileSync(join(ROOT, 'deploy/windows/tidemark-agent.xml'), 'utf8');

interface XmlElement {
  name: string;
  attributes: Record<string, string>;
  text: string;
  children: XmlElement[];
}

/**
 * A strict parser for the XML subset service definitions use (elements, attributes, text,
 * comments, the five predefined entities): throws on anything malformed, such as an unclosed tag,
 * a `--` inside a comment or a bare `&`.
 */
function parseXml(source: string): XmlElement {
  const root: XmlElement = { name: '#document', attributes: {}, text: '', children: [] };
  const stack: XmlElement[] = [root];
  const token = /<!--([\s\S]*?)-->|<\?[\s\S]*?\?>|<(\/?)([A-Za-z_][\w.-]*)((?:\s+[A-Za-z_][\w.-]*\s*=\s*"[^"<]*")*)\s*(\/?)>|([^<]+)|(<)/g;
  const decode = (s: string): string => {
    if (/&(?!(amp|lt|gt|quot|apos);)/.test(s)) throw new Error(`bare & in ${JSON.stringify(s.trim())}`);
    return s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ({ amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" })[e] ?? '');
  };
  for (const m of source.matchAll(token)) {
    const top = stack.at(-1) as XmlElement;
    const [, comment, closing, name, attrs, selfClosing, text, stray] = m;
    if (stray !== undefined) throw new Error(`malformed markup at offset ${m.index}`);
    if (comment !== undefined) {
      if (comment.includes('--') || comment.endsWith('-')) throw new Error(`"--" inside a comment at offset ${m.index}`);
    } else if (text !== undefined) {
      if (stack.length === 1 && text.trim() !== '') throw new Error('text outside the root element');
      top.text += decode(text);
    } else if (name !== undefined) {
      if (closing) {
        if (top.name !== name) throw new Error(`</${name}> closes <${top.name}>`);
        stack.pop();
      } else {
        const el: XmlElement = { name, attributes: {}, text: '', children: [] };
        for (const a of (attrs ?? '').matchAll(/([A-Za-z_][\w.-]*)\s*=\s*"([^"]*)"/g)) el.attributes[a[1] as string] = decode(a[2] as string);
        if (stack.length === 1 && root.children.length > 0) throw new Error('more than one root element');
        top.children.push(el);
        if (!selfClosing) stack.push(el);
      }
    }
  }
  if (stack.length !== 1) throw new Error(`<${stack.at(-1)?.name}> is not closed`);
  const [doc] = root.children;
  if (!doc) throw new Error('no root element');
  return doc;
}

const service = parseXml(xml);
const all = (name: string): XmlElement[] => service.children.filter((c) => c.name === name);
const one = (name: string): string => {
  const [el, ...more] = all(name);
  if (!el || more.length) throw new Error(`expected exactly one <${name}>`);
  return el.text.trim();
};

/** `10 sec`, `1 hour`: WinSW durations in seconds. */
function seconds(duration: string): number {
  const m = /^(\d+)\s*(sec|secs|min|mins|hour|hours)$/.exec(duration.trim());
  if (!m) throw new Error(`not a WinSW duration: ${duration}`);
  return Number(m[1]) * (m[2]?.startsWith('hour') ? 3600 : m[2]?.startsWith('min') ? 60 : 1);
}

describe('Windows service definition (WinSW)', () => {
  it('is well-formed XML with a <service> root (and the checker rejects malformed XML)', () => {
    expect(service.name).toBe('service');
    expect(() => parseXml('<service><id>x</service>')).toThrow();
    expect(() => parseXml('<!-- a -- b --><service/>')).toThrow();
    expect(() => parseXml('<service><env name="a" value="b & c"/></service>')).toThrow();
  });

  it("runs node on the package's bin: `agent --config %ProgramData%\\tidemark\\agent.yaml`", () => {
    expect(one('id')).toBe('tidemark-agent');
    expect(one('executable')).toMatch(/\\node\.exe$/);
    const args = all('argument').map((a) => a.text.trim());
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; bin: Record<string, string> };
    // npm install --prefix %BASE% puts the package at %BASE%\node_modules\<name>.
    expect(args[0]).toBe(`%BASE%\\node_modules\\${pkg.name}\\${pkg.bin.tidemark?.replaceAll('/', '\\')}`);
    expect(args.slice(1)).toEqual(['agent', '--config', '%ProgramData%\\tidemark\\agent.yaml']);
    // The real CLI has that command and option.
    const agent = buildProgram().commands.find((c) => c.name() === 'agent');
    expect(agent?.options.map((o) => o.long)).toContain('--config');
    expect(all('arguments')).toEqual([]); // one form only: <argument> elements, quoted by WinSW
  });

  it('passes secrets as environment variables the config can reference', () => {
    const names = all('env').map((e) => e.attributes.name);
    expect(names).toEqual(expect.arrayContaining(['TIDEMARK_DATABASE_URL', 'TIDEMARK_API_KEY']));
    for (const n of names) expect(n === 'NODE_ENV' || n?.startsWith('TIDEMARK_')).toBe(true);
  });

  it('runs as LocalService, starts automatically, restarts on failure, and waits for the run in flight on stop', () => {
    const account = service.children.find((c) => c.name === 'serviceaccount');
    expect(account?.children.find((c) => c.name === 'username')?.text.trim()).toBe('NT AUTHORITY\\LocalService');
    expect(one('startmode')).toBe('Automatic');
    const failures = all('onfailure');
    expect(failures.length).toBeGreaterThan(0);
    for (const f of failures) expect(f.attributes.action).toBe('restart');
    const defaults = loadAgentConfig({
      env: {},
      flags: {
        databaseUrl: 'postgres://x@localhost/x',
        serverUrl: 'https://x',
        clientId: 'acme',
        databaseId: '6f1c1f3e-8d3b-4f6e-9a43-2b7d1c0e5a10',
        apiKey: 'k',
      },
    });
    expect(seconds(one('stoptimeout'))).toBeGreaterThan(defaults.runBudgetSeconds);
  });
});
