import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { WorkerConfig, WorkerEvent } from '../fixtures/src/worker-config.js';

/** The built CLI (`npx tsc -b`), as users run it. */
export const CLI = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
/** The built worker fixture (`npx tsc -b`). */
export const WORKER = fileURLToPath(new URL('../fixtures/dist/worker.js', import.meta.url));

export type JsonLine = Readonly<Record<string, unknown>>;

/** Env without LOCKQ_* settings, so the caller's shell cannot change results. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('LOCKQ_')) delete env[key];
  return env;
}

const running = new Set<JsonLinesProcess<JsonLine>>();

/**
 * A child Node process whose stdout and stderr are JSON lines (a line that is not JSON is kept
 * as `{ raw }`). Every line is kept, so a test can wait for one and check the whole history.
 */
export class JsonLinesProcess<T extends JsonLine> {
  readonly child: ChildProcess;
  readonly name: string;
  readonly lines: T[] = [];
  readonly errLines: JsonLine[] = [];
  /** Resolves with the exit code, or the signal that ended it. */
  readonly exited: Promise<number | NodeJS.Signals | null>;
  #ended = false;
  #waiters: (() => void)[] = [];

  constructor(name: string, args: readonly string[], options: { readonly stdin?: boolean } = {}) {
    this.name = name;
    this.child = spawn(process.execPath, args, {
      env: cleanEnv(),
      stdio: [options.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    running.add(this as unknown as JsonLinesProcess<JsonLine>);
    const follow = (stream: NodeJS.ReadableStream | null, into: JsonLine[]) => {
      let buffer = '';
      stream?.setEncoding('utf8');
      stream?.on('data', (d: string) => {
        buffer += d;
        let nl = buffer.indexOf('\n');
        while (nl >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 1);
          if (line.trim() !== '') into.push(parse(line));
          nl = buffer.indexOf('\n');
        }
        this.#wake();
      });
    };
    follow(this.child.stdout, this.lines);
    follow(this.child.stderr, this.errLines);
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.#ended = true;
        running.delete(this as unknown as JsonLinesProcess<JsonLine>);
        resolve(code ?? signal);
        // Lines still in the pipes arrive after 'exit'; give them a moment before waking waiters.
        setTimeout(() => this.#wake(), 50);
      }),
    );
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The first line (past or future) matching `match`; rejects on timeout or when the process ends without one. */
  async line(match: (line: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let endedAt: number | undefined;
    for (;;) {
      const found = this.lines.find(match);
      if (found !== undefined) return found;
      if (this.#ended) endedAt ??= Date.now();
      if (Date.now() > deadline || (endedAt !== undefined && Date.now() - endedAt > 200)) {
        throw new Error(
          `${this.name}: no ${what} within ${timeoutMs} ms${this.#ended ? ' (the process ended)' : ''}\n` +
            `stdout: ${this.lines.map((l) => JSON.stringify(l)).join('\n')}\n` +
            `stderr: ${this.errLines.map((l) => JSON.stringify(l)).join('\n')}`,
        );
      }
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }
}

function parse(line: string): JsonLine {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonLine) : { raw: line };
  } catch {
    return { raw: line };
  }
}

/** SIGKILLs every process started here that is still running (a stopped one included). */
export async function killAll(): Promise<void> {
  const all = [...running];
  for (const p of all) p.child.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}

/** A pino line of `lockq coordinator`. */
export interface LogLine extends JsonLine {
  readonly level?: number;
  readonly msg?: string;
  readonly component?: string;
}

/** `lockq coordinator` from the built CLI, its log (pino JSON on stdout) followed. */
export class CoordinatorProcess extends JsonLinesProcess<LogLine> {
  /** The admin listener, e.g. http://127.0.0.1:41234. */
  admin = '';

  static async start(args: readonly string[]): Promise<CoordinatorProcess> {
    const p = new CoordinatorProcess('coordinator', [CLI, 'coordinator', '--admin-port', '0', ...args]);
    const ready = await p.line((l) => l.msg === 'coordinator ready', 'ready line', 20_000);
    p.admin = String(ready.admin);
    return p;
  }

  async metrics(): Promise<string> {
    return (await fetch(`${this.admin}/metrics`)).text();
  }

  /** The value of an unlabelled (or first labelled) sample of `name` on /metrics. */
  async metric(name: string): Promise<number> {
    const text = await this.metrics();
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    if (m === null) throw new Error(`no ${name} on /metrics:\n${text}`);
    return Number(m[1]);
  }

  /** SIGTERM, then the exit code. */
  async stop(): Promise<number | NodeJS.Signals | null> {
    this.signal('SIGTERM');
    return this.exited;
  }
}

/** A worker process from test/fixtures/src/worker.ts. */
export class WorkerProcess extends JsonLinesProcess<WorkerEvent & JsonLine> {
  readonly config: WorkerConfig;

  constructor(config: WorkerConfig) {
    super(config.workerId, [WORKER, JSON.stringify(config)], { stdin: config.script === 'gate' });
    this.config = config;
  }

  /** The first `event` line this worker printed (or prints), failing fast on `fatal`. */
  event(event: WorkerEvent['event'], timeoutMs = 15_000): Promise<WorkerEvent> {
    return this.line(
      (l) => {
        if (l.event === 'fatal' && event !== 'fatal') throw new Error(`${this.name} failed: ${JSON.stringify(l)}`);
        return l.event === event;
      },
      `"${event}" event`,
      timeoutMs,
    );
  }

  events(event: WorkerEvent['event']): WorkerEvent[] {
    return this.lines.filter((l) => l.event === event);
  }

  /** Writes a line to a gate worker's stdin. */
  say(line: string): void {
    this.child.stdin?.write(`${line}\n`);
  }
}
