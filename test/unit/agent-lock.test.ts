import { describe, expect, it } from 'vitest';

import { reconnectDelayMs } from '../../src/agent/local/agent-lock.js';

const unavailable = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
const shutdown = Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
const badPassword = Object.assign(new Error('password authentication failed'), { code: '28P01' });

describe('agent lock reconnect backoff', () => {
  it('backs off briefly, doubling, with jitter, when the database is unavailable', () => {
    expect(reconnectDelayMs(unavailable, 1, () => 0)).toBe(500);
    expect(reconnectDelayMs(unavailable, 1, () => 0.999)).toBeLessThanOrEqual(1000);
    expect(reconnectDelayMs(shutdown, 3, () => 0)).toBe(2000);
    expect(reconnectDelayMs(unavailable, 20, () => 0.999)).toBeLessThanOrEqual(30_000);
  });

  it('backs off long when the database refuses the credentials (28P01)', () => {
    expect(reconnectDelayMs(badPassword, 1, () => 0)).toBe(30_000);
    expect(reconnectDelayMs(badPassword, 10, () => 0.999)).toBeLessThanOrEqual(600_000);
    expect(reconnectDelayMs(badPassword, 10, () => 0)).toBe(300_000);
  });
});
