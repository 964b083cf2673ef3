/**
 * How much one table run may do before it stops and leaves the rest to the next run (its place is
 * kept, so nothing is sent twice). In production the budget is time (`runBudgetSeconds`, on an
 * injectable clock); tests give a budget in upload requests, so what a run does never depends on how
 * fast the machine is.
 */

export interface RunBudget {
  /** Counts one upload request sent. */
  spend(): void;
  /** True once no new batch should start. */
  exhausted(): boolean;
}

/** Makes the budget of one run. */
export type RunBudgetFactory = () => RunBudget;

/** A budget of `seconds` from the moment the run starts, read on `now` (epoch ms). */
export function timeBudget(seconds: number, now: () => number = Date.now): RunBudgetFactory {
  return () => {
    const deadline = now() + seconds * 1000;
    return { spend: () => {}, exhausted: () => now() > deadline };
  };
}

/** A budget of `requests` upload requests per run (tests). */
export function requestBudget(requests: number): RunBudgetFactory {
  return () => {
    let spent = 0;
    return {
      spend: () => {
        spent++;
      },
      exhausted: () => spent >= requests,
    };
  };
}

/** No limit (`verify`: the whole table, now). */
export const UNLIMITED: RunBudget = { spend: () => {}, exhausted: () => false };
