/**
 * Admission control of uploads (issue 10, target 5): at most K load at once, the others wait in
 * arrival order and are shed with a 503 once their wait bound passes. The timer is injected and
 * fired by the test: nothing depends on the clock.
 */
import { describe, expect, it } from 'vitest';
import { RetryLaterError } from '../../src/server/http-errors.js';
import { type QueueTimer, UploadAdmission } from '../../src/server/upload-admission.js';
import { ErrorCode } from '../../src/shared/errors.js';

/** A timer the test fires by hand. */
function manualTimer(): { timer: QueueTimer; armed: { ms: number; fire: () => void; cancelled: boolean }[] } {
  const armed: { ms: number; fire: () => void; cancelled: boolean }[] = [];
  return {
    armed,
    timer: (ms, fire) => {
      const t = { ms, fire, cancelled: false };
      armed.push(t);
      return () => {
        t.cancelled = true;
      };
    },
  };
}

/** Settles `p` into a value the test can look at without awaiting it. */
function track<T>(p: Promise<T>): { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } {
  const s: { state: 'pending' | 'resolved' | 'rejected'; value?: T; error?: unknown } = { state: 'pending' };
  p.then(
    (value) => Object.assign(s, { state: 'resolved', value }),
    (error: unknown) => Object.assign(s, { state: 'rejected', error }),
  );
  return s;
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('upload admission', () => {
  it('lets K uploads load at once and admits the waiting ones in arrival order as slots free', async () => {
    const { timer, armed } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 2, maxWaitMs: 20_000, retryAfterSeconds: 2, timer });
    const releaseA = await admission.enter();
    const releaseB = await admission.enter();
    const c = track(admission.enter());
    const d = track(admission.enter());
    await flush();
    expect(admission.stats()).toEqual({ active: 2, waiting: 2 });
    expect([c.state, d.state]).toEqual(['pending', 'pending']);
    expect(armed.map((t) => t.ms)).toEqual([20_000, 20_000]);

    releaseA();
    releaseA(); // a second release of the same slot changes nothing
    await flush();
    expect([c.state, d.state]).toEqual(['resolved', 'pending']);
    expect(admission.stats()).toEqual({ active: 2, waiting: 1 });
    expect(armed[0]?.cancelled).toBe(true);

    releaseB();
    await flush();
    expect(d.state).toBe('resolved');
    (c.value as () => void)();
    (d.value as () => void)();
    expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
  });

  it('sheds an upload that waited past its bound with 503 TM_SERVER_OVERLOADED and Retry-After, and forgets it', async () => {
    const { timer, armed } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 5000, retryAfterSeconds: 3, timer });
    const shed: string[] = [];
    admission.on('shed', () => shed.push('shed'));
    const releaseA = await admission.enter();
    const b = track(admission.enter());
    const c = track(admission.enter());
    await flush();
    armed[0]?.fire();
    await flush();
    expect(b.state).toBe('rejected');
    expect(b.error).toBeInstanceOf(RetryLaterError);
    expect(b.error).toMatchObject({ status: 503, code: ErrorCode.SERVER_OVERLOADED, retryAfterSeconds: 3 });
    expect(shed).toEqual(['shed']);
    expect(admission.stats()).toEqual({ active: 1, waiting: 1 });
    // The slot goes to the upload still waiting, not to the shed one.
    releaseA();
    await flush();
    expect(c.state).toBe('resolved');
    // A timer that fires after its upload was admitted sheds nothing.
    armed[1]?.fire();
    await flush();
    expect(c.state).toBe('resolved');
    (c.value as () => void)();
    expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
  });

  it('a body declared smaller than minBytes loads without a slot; one of unknown length waits', async () => {
    const { timer } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 1000, retryAfterSeconds: 2, timer, minBytes: 64 * 1024 });
    const releaseA = await admission.enter(4 * 1024 * 1024);
    const small = track(admission.enter(2000));
    const unknown = track(admission.enter());
    await flush();
    expect([small.state, unknown.state]).toEqual(['resolved', 'pending']);
    expect(admission.stats()).toEqual({ active: 1, waiting: 1 });
    (small.value as () => void)(); // releasing a slot-less upload frees nothing
    expect(admission.stats()).toEqual({ active: 1, waiting: 1 });
    releaseA();
    await flush();
    expect(unknown.state).toBe('resolved');
    (unknown.value as () => void)();
    expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
  });

  it('a newcomer never overtakes the queue when a slot frees', async () => {
    const { timer } = manualTimer();
    const admission = new UploadAdmission({ maxConcurrent: 1, maxWaitMs: 1000, retryAfterSeconds: 2, timer });
    const order: string[] = [];
    const releaseA = await admission.enter();
    const b = admission.enter().then((r) => {
      order.push('b');
      return r;
    });
    releaseA();
    const c = admission.enter().then((r) => {
      order.push('c');
      return r;
    });
    (await b)();
    (await c)();
    expect(order).toEqual(['b', 'c']);
    expect(admission.stats()).toEqual({ active: 0, waiting: 0 });
  });
});
