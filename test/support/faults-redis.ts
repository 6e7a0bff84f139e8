import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { redisPongs, requireCommand } from './brokers.js';
import { elapse, waitFor } from './wait-for.js';

const execFileP = promisify(execFile);

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server of the fault tests' own (never the shared one at 6379): a child process on a
 * free port with the AOF on and fsynced on every write, in a temporary directory, so it can be
 * killed and restarted on the same data.
 */
export class FaultsRedis {
  readonly port: number;
  readonly dir: string;
  readonly url: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(port: number) {
    this.port = port;
    this.dir = mkdtempSync(join(tmpdir(), 'lockq-faults-redis-'));
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async start(): Promise<FaultsRedis> {
    const redis = new FaultsRedis(await freePort());
    await redis.start();
    return redis;
  }

  get running(): boolean {
    return this.#child !== undefined && this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** Starts redis-server on this port and directory (loading the AOF there) and waits for PONG. */
  async start(): Promise<void> {
    if (this.running) throw new Error('redis-server is already running');
    const child = spawn(
      'redis-server',
      [
        '--port', String(this.port),
        '--bind', '127.0.0.1',
        '--dir', this.dir,
        '--appendonly', 'yes',
        '--appendfsync', 'always',
        '--save', '',
        '--maxmemory-policy', 'noeviction',
        '--logfile', 'redis.log',
        '--daemonize', 'no',
      ],
      { stdio: 'ignore' },
    );
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}:\n${this.log()}`);
        return redisPongs(this.port);
      },
      () => `redis-server on ${this.port} to answer:\n${this.log()}`,
      { timeoutMs: 15_000, intervalMs: 20 },
    );
  }

  /** kill -9: whatever Redis acknowledged is in the AOF (appendfsync always). */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
  }

  /** A clean stop: SHUTDOWN (AOF flushed and fsynced), then wait for the process to exit. */
  async shutdown(): Promise<void> {
    // SHUTDOWN closes the connection without an answer; redis-cli then exits non-zero.
    await execFileP('redis-cli', ['-p', String(this.port), 'shutdown']).catch(() => undefined);
    await Promise.race([this.#exited, elapse(10_000)]);
    if (this.running) throw new Error('redis-server did not exit after SHUTDOWN');
  }

  /** One command through redis-cli, e.g. `GET {p:p0}:epoch`. */
  async command(...args: string[]): Promise<string> {
    const { stdout } = await execFileP('redis-cli', ['-p', String(this.port), ...args]);
    return stdout.trim();
  }

  log(): string {
    try {
      return readFileSync(join(this.dir, 'redis.log'), 'utf8').split('\n').slice(-30).join('\n');
    } catch {
      return '(no redis.log)';
    }
  }

  /** Stops it and removes its directory. */
  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** True when a redis-server binary can be run (the fault tests start their own); see `requireCommand`. */
export function requireRedisServer(): Promise<boolean> {
  return requireCommand('redis-server', ['--version'], 'the suites that start their own Redis');
}
