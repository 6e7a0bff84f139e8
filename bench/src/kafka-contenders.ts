import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command, ProcessConfig, Report, WorkerSpec } from './kafka-contender-process.js';
import { idleFixEnvironment } from './kafka-idle-fix.js';
import { inBatches } from './lockq-amqp.js';
import type { Contender, LockSystem, Release } from './workload.js';

/**
 * Workers in processes of their own, for the Kafka suite's hot lock: `count` child processes
 * (kafka-contender-process.ts), each with one LockClient per system, seen from here as
 * {@link Contender}s, so workload.ts's `hotLock` measures them unchanged. An acquire or a
 * release is one IPC message to the worker's process and one back (tens of microseconds, beside
 * the broker hops of a hand-off); every hand-off crosses the broker.
 */

const PROCESS = fileURLToPath(new URL('./kafka-contender-process.js', import.meta.url));
/** Processes started at once: each loads the SDK and its drivers, which a 2-core machine feels. */
const STARTING_AT_ONCE = 8;
const READY_TIMEOUT_MS = 120_000;

interface Pending {
  readonly resolve: (report: Report) => void;
  readonly reject: (err: Error) => void;
}

/** One worker process and the requests it has not answered yet. */
class WorkerProcess {
  readonly child: ChildProcess;
  readonly #pending = new Map<number, Pending>();
  /** Latest publish count of each system's client in this process. */
  readonly sent = new Map<string, number>();
  #next = 0;
  #gone: Error | null = null;

  constructor(config: ProcessConfig) {
    this.child = fork(PROCESS, [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
      env: idleFixEnvironment(),
      // A process group of its own: a Ctrl-C (or timeout's signal) stops the bench, which closes
      // this process after its clean-up; the process also exits when the bench's channel closes.
      detached: true,
    });
    this.child.on('message', (raw) => this.#received(raw as Report));
    this.child.on('exit', (code, signal) => this.#ended(new Error(`worker process ${config.workerId} exited (${signal ?? code})`)));
    this.child.on('error', (err) => this.#ended(err));
  }

  /** The ready report; rejects when the process failed to connect or exits first. */
  ready(): Promise<Readonly<Record<string, string>>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`a worker process did not connect within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS);
      this.#pending.set(-1, {
        resolve: (r) => {
          clearTimeout(timer);
          if (r.type === 'ready') resolve(r.addresses);
          else reject(new Error(`a worker process could not connect: ${r.type === 'failed' ? r.message : r.type}`));
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
    });
  }

  /** Sends `command` (with a fresh id, unless `close`) and resolves with the answer to it. */
  ask(command: { type: 'acquire'; key: string; name: string } | { type: 'release'; id: number }): Promise<Report & { id: number }> {
    if (this.#gone !== null) return Promise.reject(this.#gone);
    const id = command.type === 'acquire' ? this.#next++ : command.id;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: (r) => resolve(r as Report & { id: number }), reject });
      this.child.send({ ...command, id } satisfies Command);
    });
  }

  /** Asks the process to close its clients and exit; kills it after `graceMs`. */
  async close(graceMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    try {
      this.child.send({ type: 'close' } satisfies Command);
    } catch {
      // the channel is closed already: the process is on its way out
    }
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  #received(r: Report): void {
    const id = r.type === 'ready' || r.type === 'failed' ? -1 : r.id;
    const p = this.#pending.get(id);
    this.#pending.delete(id);
    if (r.type === 'error') p?.reject(new Error(r.message));
    else p?.resolve(r);
  }

  #ended(err: Error): void {
    this.#gone ??= err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }
}

export interface WorkerProcesses {
  /**
   * The processes' clients of system `key` as a lock system; its message count adds
   * `otherMessages` (the coordinator's replies) to what the clients published.
   */
  system(key: string, label: string, otherMessages: () => number): LockSystem;
  /** Closes every client and ends every process. */
  close(): Promise<void>;
}

/**
 * Starts `count` worker processes, each with a client of every system in `systems` (workers
 * `bench-p<i>`), and waits until all are connected and have opened a session (one acquire and
 * release on each system). `addresses` collects each system's reply addresses as the clients
 * connect, so the caller can delete them (RabbitMQ reply queues) even when starting fails.
 */
export async function startWorkerProcesses(count: number, systems: readonly WorkerSpec[], addresses: Map<string, string[]>): Promise<WorkerProcesses> {
  const started: WorkerProcess[] = [];
  const close = async () => {
    await Promise.all(started.map((p) => p.close()));
  };
  try {
    await inBatches(count, STARTING_AT_ONCE, async (i) => {
      const p = new WorkerProcess({ workerId: `bench-p${i}`, systems });
      started.push(p);
      const mine = await p.ready();
      for (const [key, address] of Object.entries(mine)) addresses.set(key, [...(addresses.get(key) ?? []), address]);
    });
  } catch (err) {
    await close();
    throw err;
  }
  const contender = (p: WorkerProcess, key: string): Contender => ({
    async acquire(name): Promise<Release> {
      const granted = await p.ask({ type: 'acquire', key, name });
      p.sent.set(key, (granted as { sent: number }).sent);
      return async () => {
        const released = await p.ask({ type: 'release', id: granted.id });
        p.sent.set(key, (released as { sent: number }).sent);
      };
    },
  });
  for (const s of systems) {
    await Promise.all(started.map(async (p, i) => (await contender(p, s.key).acquire(`warm-up:p${i}`))?.()));
  }
  return {
    system(key, label, otherMessages) {
      return {
        label,
        workers: started.map((p) => contender(p, key)),
        messages: () => otherMessages() + started.reduce((sum, p) => sum + (p.sent.get(key) ?? 0), 0),
      };
    },
    close,
  };
}
