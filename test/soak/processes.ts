/**
 * `tidemark` child processes as a user runs them (`node dist/cli/main.js ...`): long-running ones
 * (server, agent) that the fault test kills and restarts, and one-shot commands. Every line either
 * prints is kept, so the test can look for crashes ("no unhandled error in any log") and wait for
 * events such as "server listening".
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository root: two folders up from test/soak, three from its compiled copy in dist-bench/test/soak. */
function root(): string {
  for (let dir = import.meta.dirname; dir !== dirname(dir); dir = dirname(dir)) if (existsSync(join(dir, 'package.json'))) return dir;
  throw new Error('package.json not found above test/soak');
}

const BIN = join(root(), 'dist/cli/main.js');

export interface LogLine {
  process: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

/** What a crash looks like in a Node process's output: these never belong in a tidemark log. */
const CRASH_PATTERNS: readonly RegExp[] = [
  /Unhandled 'error' event/,
  /unhandledRejection|UnhandledPromiseRejection/i,
  /uncaughtException|Uncaught /,
  /tidemark: unexpected error/,
  /^\s+at .+:\d+:\d+\)?$/, // a stack frame printed raw
  /FATAL ERROR|Segmentation fault|heap out of memory/i,
];

export function isCrashLine(text: string): boolean {
  return CRASH_PATTERNS.some((p) => p.test(text));
}

/** A pino JSON line, parsed; null for other output. */
export function parseLogLine(text: string): { level: number; msg: string; [k: string]: unknown } | null {
  if (!text.startsWith('{')) return null;
  try {
    const v = JSON.parse(text) as { level?: unknown; msg?: unknown };
    return typeof v.level === 'number' && typeof v.msg === 'string' ? (v as { level: number; msg: string }) : null;
  } catch {
    return null;
  }
}

export class ProcessLog {
  readonly lines: LogLine[] = [];
  private readonly waiters: { test: (l: LogLine) => boolean; resolve: () => void }[] = [];
  /** Exits nobody asked for: a process that died by itself. */
  readonly unexpectedExits: { process: string; code: number | null; signal: string | null; tail: string[] }[] = [];

  add(line: LogLine): void {
    this.lines.push(line);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i];
      if (w?.test(line)) {
        this.waiters.splice(i, 1);
        w.resolve();
      }
    }
  }

  /** Resolves at the first line from now on that passes `test`. */
  next(test: (l: LogLine) => boolean): Promise<void> {
    return new Promise((resolve) => this.waiters.push({ test, resolve }));
  }

  crashLines(): LogLine[] {
    return this.lines.filter((l) => isCrashLine(l.text));
  }

  tail(process: string, n: number): string[] {
    return this.lines
      .filter((l) => l.process === process)
      .slice(-n)
      .map((l) => l.text);
  }
}

function collect(child: ChildProcess, name: string, log: ProcessLog): void {
  for (const stream of ['stdout', 'stderr'] as const) {
    let rest = '';
    child[stream]?.on('data', (c: Buffer) => {
      const parts = (rest + c.toString('utf8')).split('\n');
      rest = parts.pop() ?? '';
      for (const text of parts) if (text.trim()) log.add({ process: name, stream, text });
    });
    child[stream]?.on('end', () => {
      if (rest.trim()) log.add({ process: name, stream, text: rest });
      rest = '';
    });
  }
}

/** A long-running tidemark process (server or agent). */
export class Daemon {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  private killing = false;
  /** Times it was started. */
  starts = 0;
  /** Times it died by itself. */
  crashes = 0;

  constructor(
    readonly name: string,
    private readonly args: string[],
    private readonly log: ProcessLog,
    private readonly env: Record<string, string> = {},
  ) {}

  get running(): boolean {
    return this.child !== null;
  }

  /** Starts it and resolves once a line passes `ready` (or rejects if it exits first). */
  async start(ready: (l: LogLine) => boolean): Promise<void> {
    if (this.child) throw new Error(`${this.name} is already running`);
    this.starts++;
    const name = `${this.name}#${this.starts}`;
    const child = spawn(process.execPath, [BIN, ...this.args], { env: { PATH: process.env.PATH ?? '', ...this.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.killing = false;
    collect(child, name, this.log);
    let onExit: (code: number | null, signal: string | null) => void = () => {};
    const exitedEarly = new Promise<never>((_, reject) => {
      onExit = (code, signal) =>
        reject(new Error(`${name} exited before it was ready (code ${code}, signal ${signal}): ${this.log.tail(name, 5).join(' | ')}`));
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        if (this.child === child) this.child = null;
        if (!this.killing) {
          this.crashes++;
          // Let the last lines arrive before taking the tail.
          setImmediate(() => this.log.unexpectedExits.push({ process: name, code, signal, tail: this.log.tail(name, 8) }));
        }
        onExit(code, signal);
        resolve();
      });
    });
    exitedEarly.catch(() => {});
    const readyLine = this.log.next((l) => l.process === name && ready(l));
    await Promise.race([readyLine, exitedEarly]);
    onExit = () => {};
  }

  /** Resolves when the current process exits (at once if none runs). */
  whenExited(): Promise<void> {
    return this.exited;
  }

  /** kill -9, as a crash, an OOM killer or a power cut of the host would. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.killing = true;
    child.kill(signal);
    await this.exited;
  }

  /**
   * Asks it to stop (SIGTERM, as a service manager does) and waits up to `timeoutMs`; one that has
   * not exited by then is killed. Resolves false when it had to be killed.
   */
  async stop(timeoutMs: number): Promise<boolean> {
    const child = this.child;
    if (!child) return true;
    this.killing = true;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([this.exited.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)))]);
    clearTimeout(timer);
    if (!inTime) {
      child.kill('SIGKILL');
      await this.exited;
    }
    return inTime;
  }
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A one-shot tidemark command (sync --once, status, register, track...), its output kept in the log. */
export function tidemark(args: string[], log: ProcessLog, name: string, env: Record<string, string> = {}): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      for (const text of stdout.split('\n')) if (text.trim()) log.add({ process: name, stream: 'stdout', text });
      for (const text of stderr.split('\n')) if (text.trim()) log.add({ process: name, stream: 'stderr', text });
      resolve({ code, stdout, stderr });
    });
  });
}
