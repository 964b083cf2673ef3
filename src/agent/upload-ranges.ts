/** Which (version, key) ranges a run uploads, from the remote's settled horizon and a resume point. */
import type { KeyRange, TableSummary } from '../shared/protocol.js';
import type { UploadResume } from './local/table-state-store.js';

/**
 * Versions the remote may lack: >= its settled xmax, or in progress when it settled. With a resume
 * point, the main range starts after it, and the versions in progress when it was read are added.
 */
export function uploadRanges(summary: TableSummary, resume: UploadResume | null = null): KeyRange[] {
  const from = summary.settledXmax ?? summary.settledVersion;
  const single = (x: string): KeyRange => ({ lower: { version: x, key: null }, upper: { version: (BigInt(x) + 1n).toString(), key: null } });
  const xip = new Set(summary.settledXip.filter((x) => BigInt(x) < BigInt(from)));
  if (resume) for (const x of resume.xip) if (BigInt(x) < BigInt(resume.after.version)) xip.add(x);
  const ranges = [...xip].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1)).map(single);
  ranges.push(resume ? { lower: resume.after, lowerExclusive: true, upper: null } : { lower: { version: from, key: null }, upper: null });
  return ranges;
}
