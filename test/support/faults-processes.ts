import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The built CLI and worker fixture, as users and the other cross-process suites run them. */
export const CLI = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
export const FAULTS_WORKER = fileURLToPath(new URL('../fixtures/dist/faults-worker.js', import.meta.url));

export function requireBuilt(): void {
  for (const file of [CLI, FAULTS_WORKER]) {
    if (!existsSync(file)) throw new Error(`${file} is missing: build first (npx tsc -b)`);
  }
}

/** One JSON line of a child, with the moment this process read it. */
export interface Line {
  readonly [key: string]: unknown;
}

/**
 * A child process that writes JSON lines on stdout, kept in `lines` as they arrive. Lines that
 * are not JSON and everything on stderr go to `noise` (shown when a test fails).
 */
export class JsonLinesProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: Line[] = [];
  readonly noise: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #buffer = '';
  #waiters: (() => void)[] = [];
  /** Exited and its pipes drained ('close' follows 'exit' once the last lines are read). */
  #closed = false;

  constructor(name: string, args: readonly string[], env: NodeJS.ProcessEnv = {}) {
    this.name = name;
    this.child = spawn(process.execPath, [...args], {
      env: { ...cleanEnv(), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.#buffer += d;
      let nl = this.#buffer.indexOf('\n');
      while (nl >= 0) {
        const text = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        try {
          this.lines.push(JSON.parse(text) as Line);
        } catch {
          this.noise.push(text);
        }
        nl = this.#buffer.indexOf('\n');
      }
      this.#wake();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      this.noise.push(...d.split('\n').filter((l) => l !== ''));
      if (this.noise.length > 2000) this.noise.splice(0, this.noise.length - 2000);
    });
    // A dead child's stdin must not crash the test with EPIPE.
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        this.#wake();
        resolve({ code, signal });
      }),
    );
    this.child.on('close', () => {
      this.#closed = true;
      this.#wake();
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The first line from index `from` on that matches, waiting up to `timeoutMs` for it. */
  async waitFor(what: string, match: (line: Line) => boolean, timeoutMs: number, from = 0): Promise<Line> {
    const deadline = Date.now() + timeoutMs;
    let i = from;
    for (;;) {
      for (; i < this.lines.length; i++) {
        const line = this.lines[i] as Line;
        if (match(line)) return line;
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.name}: no ${what} within ${timeoutMs} ms; last lines:\n${this.tail()}`);
      }
      if (this.#closed && this.lines.length === i) throw new Error(`${this.name} exited before ${what}; last lines:\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Writes one JSON command line on stdin. */
  send(command: object): void {
    if (this.alive) this.child.stdin?.write(`${JSON.stringify(command)}\n`);
  }

  signal(signal: NodeJS.Signals): void {
    if (this.alive) this.child.kill(signal);
  }

  tail(n = 25): string {
    const lines = this.lines.slice(-n).map((l) => JSON.stringify(l));
    const noise = this.noise.slice(-10);
    return [...lines, ...(noise.length > 0 ? ['-- stderr/noise:', ...noise] : [])].join('\n');
  }
}

/** Env without LOCKQ_ settings, so the caller's shell cannot change a child's behaviour. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('LOCKQ_')) delete env[key];
  return env;
}

/** A pino log line of `lockq coordinator`. */
export interface LogLine extends Line {
  readonly level: number;
  readonly time: number;
  readonly msg: string;
  readonly partition?: number;
  readonly epoch?: number;
  readonly lastToken?: number;
  readonly err?: { readonly type?: string; readonly message?: string };
}

export const CLAIMED = 'partition claimed';
export const STOOD_BY = 'another coordinator took this partition over; standing by';
export const DROPPED = 'commit failed; dropping state to reload it';
export const CONSUMER_LOST = 'lost the broker consumer; dropping state until the next delivery';

/** A `lockq coordinator` process (the built CLI), its JSON log in `lines`. */
export class CoordinatorProcess extends JsonLinesProcess {
  readonly startedAt = Date.now();

  constructor(name: string, flags: readonly string[]) {
    super(name, [CLI, 'coordinator', ...flags]);
  }

  get log(): LogLine[] {
    return this.lines as LogLine[];
  }

  ready(timeoutMs = 30_000): Promise<Line> {
    return this.waitFor('"coordinator ready"', (l) => l.msg === 'coordinator ready', timeoutMs);
  }

  /** Log lines with this message (written at or after `since`, on the log's own clock). */
  logged(msg: string, since = 0): LogLine[] {
    return this.log.filter((l) => l.msg === msg && l.time >= since);
  }

  /**
   * The partition runner's claims (a new term: epoch bumped, state restored) at or after `since`.
   * Only those: the Kafka transport logs the same message when it takes a partition's
   * transactional id, without an epoch.
   */
  claims(since = 0): LogLine[] {
    return this.logged(CLAIMED, since).filter((l) => l.epoch !== undefined);
  }
}

export interface WorkerEvent extends Line {
  readonly event: string;
  readonly worker: string;
  readonly at: number;
  readonly n?: number;
  readonly lock?: string;
  readonly token?: number;
  readonly position?: number;
  readonly accepted?: boolean;
  readonly leaseValid?: boolean;
  readonly code?: string;
  readonly message?: string;
}

/** A faults-worker process (test/fixtures/src/faults-worker.ts). */
export class WorkerProcess extends JsonLinesProcess {
  readonly workerId: string;

  constructor(workerId: string, config: object) {
    super(workerId, [FAULTS_WORKER, JSON.stringify({ ...config, workerId })]);
    this.workerId = workerId;
  }

  get events(): WorkerEvent[] {
    return this.lines as WorkerEvent[];
  }

  /** The first event of this kind from index `from` on. */
  next(event: string, timeoutMs: number, from = 0): Promise<WorkerEvent> {
    return this.waitFor(`"${event}" event`, (l) => l.event === event, timeoutMs, from) as Promise<WorkerEvent>;
  }
}
