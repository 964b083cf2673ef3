import { describe, expect, it } from 'vitest';

import { configFileFrom, defaultConfigPath } from '../../src/cli/common.js';
import { parseDuration } from '../../src/cli/key-commands.js';

describe('the default config location', () => {
  it('is /etc/tidemark/agent.yaml, %ProgramData%\\tidemark\\agent.yaml on Windows, or TIDEMARK_CONFIG', () => {
    expect(defaultConfigPath({}, 'linux')).toBe('/etc/tidemark/agent.yaml');
    expect(defaultConfigPath({ ProgramData: 'D:\\Data' }, 'win32')).toBe('D:\\Data\\tidemark\\agent.yaml');
    expect(defaultConfigPath({}, 'win32')).toBe('C:\\ProgramData\\tidemark\\agent.yaml');
    expect(defaultConfigPath({ TIDEMARK_CONFIG: '/srv/agent.yaml' }, 'linux')).toBe('/srv/agent.yaml');
  });

  it('is read when no file is named and it exists; --config and TIDEMARK_CONFIG come first', () => {
    const there = () => true;
    const absent = () => false;
    expect(configFileFrom(undefined, {}, there)).toBe(defaultConfigPath({}));
    expect(configFileFrom(undefined, {}, absent)).toBeUndefined();
    expect(configFileFrom('a.yaml', { TIDEMARK_CONFIG: 'b.yaml' }, there)).toBe('a.yaml');
    expect(configFileFrom(undefined, { TIDEMARK_CONFIG: 'b.yaml' }, absent)).toBe('b.yaml');
  });
});

describe('durations of enroll-token and rotate-key', () => {
  it('take s, m, h, d within bounds', () => {
    expect(parseDuration('7d', '--expires', 1, 90 * 86_400)).toBe(604_800);
    expect(parseDuration('90', '--expires', 1, 100)).toBe(90);
    expect(parseDuration('0s', '--overlap', 0, 10)).toBe(0);
    expect(() => parseDuration('91d', '--expires', 1, 90 * 86_400)).toThrow(/invalid --expires "91d"/);
    expect(() => parseDuration('soon', '--expires', 1, 10)).toThrow(/90s, 30m, 12h or 7d/);
  });
});
