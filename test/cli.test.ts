import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LockClient } from '@lockq/worker-sdk';
import { requestDestination, deadLetterDestination } from '@lockq/protocol';
import { connect } from 'amqplib';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AMQP_URL, requireRabbit } from './support/brokers.js';
import { waitFor } from './support/wait-for.js';

// The built CLI, as users run it: `npm test` builds first (tsc -b).
const CLI = fileURLToPath(new URL('../cli/dist/main.js', import.meta.url));
/** The command `npm install` links for the workspace package @lockq/cli, as `npx lockq` runs it. */
const BIN = fileURLToPath(new URL('../node_modules/.bin/lockq', import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Env without the settings this suite exercises, so the caller's shell cannot change results. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('LOCKQ_')) delete env[key];
  return env;
}

function run(args: readonly string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000, command: readonly string[] = [process.execPath, CLI]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const [file = '', ...before] = command;
    const child = spawn(file, [...before, ...args], { env: { ...cleanEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`lockq ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface LogLine {
  readonly level: number;
  readonly msg: string;
  readonly component?: string;
  readonly admin?: string;
  readonly [key: string]: unknown;
}

/** A running `lockq coordinator`, its stdout parsed as pino JSON lines. */
class Service {
  static async ready(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<{ service: Service; url: string }> {
    const service = new Service(args, env);
    services.push(service);
    const ready = await service.line('coordinator ready');
    expect(ready.component).toBe('cli');
    expect(ready.admin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    return { service, url: String(ready.admin) };
  }

  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  #buffer = '';

  constructor(args: readonly string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(process.execPath, [CLI, 'coordinator', ...args], {
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.#buffer += d;
      let nl = this.#buffer.indexOf('\n');
      while (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        this.lines.push(JSON.parse(line) as LogLine);
        nl = this.#buffer.indexOf('\n');
      }
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  async line(msg: string, timeoutMs = 10_000): Promise<LogLine> {
    const find = () => this.lines.find((l) => l.msg === msg);
    await waitFor(() => find() !== undefined, () => `a "${msg}" log line; got ${JSON.stringify(this.lines)}`, { timeoutMs, intervalMs: 20 });
    return find() as LogLine;
  }
}

const services: Service[] = [];

beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -b)`);
});

afterEach(() => {
  for (const s of services.splice(0)) if (s.child.exitCode === null) s.child.kill('SIGKILL');
});

describe('lockq CLI', () => {
  it('help exits 0 and documents every command, flag and variable', async () => {
    const r = await run(['help']);
    expect(r.code).toBe(0);
    for (const word of ['lockq coordinator', 'lockq inspect', 'lockq demo', 'lockq help']) expect(r.stdout).toContain(word);
    for (const flag of ['--transport', '--partitions', '--own', '--admin-host', '--admin-port', '--prefix', '--prefetch', '--log-level', '--store', '--admin', '--json', '--workers', '--seconds']) {
      expect(r.stdout).toContain(flag);
    }
    for (const env of ['LOCKQ_TRANSPORT', 'LOCKQ_PARTITIONS', 'LOCKQ_OWN_PARTITIONS', 'LOCKQ_ADMIN_HOST', 'LOCKQ_ADMIN_PORT', 'LOCKQ_PREFIX', 'LOCKQ_PREFETCH', 'LOCKQ_LOG_LEVEL']) {
      expect(r.stdout).toContain(env);
    }
  });

  it('npm links the lockq command, and it runs', async () => {
    // What `npx lockq --help` runs after `npm install`: the shipped bin, through its shebang.
    const r = await run(['--help'], {}, 20_000, [BIN]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^lockq — /);
    expect(r.stdout).toContain('lockq coordinator --transport URL');
  });

  it('an unknown command or flag exits 2', async () => {
    const unknown = await run(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const badFlag = await run(['coordinator', '--transport', 'memory:', '--nope']);
    expect(badFlag.code).toBe(2);
    expect(badFlag.stderr).toContain("'--nope'");
  });

  it('coordinator refuses bad settings with the flag named, exit 2', async () => {
    const missing = await run(['coordinator']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--transport is required');
    const scheme = await run(['coordinator', '--transport', 'nats://x']);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toContain('unsupported scheme');
    // Kafka cannot vouch for senders: running without identity must be asked for.
    const kafka = await run(['coordinator', '--transport', 'kafka://x']);
    expect(kafka.code).toBe(2);
    expect(kafka.stderr).toContain('pass --identity off');
    const own = await run(['coordinator', '--transport', 'memory:', '--partitions', '2', '--own', '0,2']);
    expect(own.code).toBe(2);
    expect(own.stderr).toContain('--own: expected an integer from 0 to 1, got "2"');
    const store = await run(['coordinator', '--transport', 'memory:', '--store', 'memory:']);
    expect(store.code).toBe(2);
    expect(store.stderr).toContain('--store: expected a redis:// or rediss:// URL');
    const port = await run(['coordinator', '--transport', 'memory:', '--admin-port', '70000']);
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('--admin-port: expected an integer from 0 to 65535, got "70000"');
  });

  it('coordinator reads the hand-off key from --secret-file (LOCKQ_SECRET_FILE), and refuses a missing or short one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lockq-secret-'));
    const missing = await run(['coordinator', '--transport', 'memory:', '--admin-port', '0', '--secret-file', join(dir, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('cannot read the secret file');
    writeFileSync(join(dir, 'short'), 'too short');
    const short = await run(['coordinator', '--transport', 'memory:', '--admin-port', '0', '--secret-file', join(dir, 'short')]);
    expect(short.code).toBe(1);
    expect(short.stdout).toContain('handOffSecret: must be at least 16 bytes');
    writeFileSync(join(dir, 'key'), randomBytes(32));
    const { service } = await Service.ready(['--admin-port', '0'], { LOCKQ_TRANSPORT: 'memory:', LOCKQ_SECRET_FILE: join(dir, 'key') });
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
  });

  it('coordinator takes its settings from the environment, flags first', async () => {
    const bad = await run(['coordinator'], { LOCKQ_TRANSPORT: 'memory:', LOCKQ_ADMIN_PORT: 'bogus' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('LOCKQ_ADMIN_PORT (--admin-port): expected an integer from 0 to 65535, got "bogus"');
    const level = await run(['coordinator', '--transport', 'memory:'], { LOCKQ_LOG_LEVEL: 'loud' });
    expect(level.code).toBe(2);
    expect(level.stderr).toContain('LOCKQ_LOG_LEVEL (--log-level): expected one of fatal, error, warn, info, debug, trace, silent');
    const { service, url } = await Service.ready(['--admin-port', '0'], {
      LOCKQ_TRANSPORT: 'memory:',
      LOCKQ_ADMIN_PORT: 'bogus', // the flag wins
      LOCKQ_PARTITIONS: '3',
      LOCKQ_OWN_PARTITIONS: '0,2',
    });
    expect((await service.line('coordinator ready')).partitions).toEqual([0, 2]);
    expect(((await (await fetch(`${url}/v1/locks`)).json()) as { owned: number[] }).owned).toEqual([0, 2]);
    service.child.kill('SIGINT');
    expect(await service.exited).toBe(0);
  });

  it('demo runs a fleet and reports no stale writes', async () => {
    const r = await run(['demo', '--seconds', '2', '--workers', '4']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^done: 4 workers, 2s/m);
    expect(r.stdout).toContain('stale writes: 0');
  });

  it('demo prints for people: plain lines on stdout, logs as plain lines on stderr, no JSON', async () => {
    const isJson = (line: string) => line.trimStart().startsWith('{');
    const quiet = await run(['demo', '--seconds', '1', '--workers', '2']);
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toMatch(/^lockq demo: 2 simulated workers/);
    expect(quiet.stdout.split('\n').filter(isJson)).toEqual([]);
    expect(quiet.stderr.split('\n').filter(isJson)).toEqual([]);
    // The memory store is not durable, and the coordinator says so at warn: as a plain line.
    expect(quiet.stderr).toMatch(/^lockq: warn: state store is not durable: .* \(component=coordinator\)$/m);
    // More detail when asked for, still plain.
    const chatty = await run(['demo', '--seconds', '1', '--workers', '2'], { LOCKQ_LOG_LEVEL: 'info' });
    expect(chatty.code).toBe(0);
    // Without a store the epoch is seeded from the wall clock: ms since 2025, 11 digits or more.
    expect(chatty.stderr).toMatch(/^lockq: info: partition claimed \(component=coordinator, partition=0, epoch=[1-9][0-9]{10,},/m);
    expect([...chatty.stdout.split('\n'), ...chatty.stderr.split('\n')].filter(isJson)).toEqual([]);
    const bad = await run(['demo'], { LOCKQ_LOG_LEVEL: 'loud' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('LOCKQ_LOG_LEVEL: expected one of fatal, error, warn');
  });

  it('coordinator serves admin and inspect, and drains on SIGTERM with exit 0', async () => {
    const { service, url } = await Service.ready(['--transport', 'memory:', '--admin-port', '0']);
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${url}/metrics`)).text()).toContain('lockq_grants_total{partition="0"} 0');

    const table = await run(['inspect', '--admin', String(url)]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^PARTITION\s+STATE\s+LOCKS\s+HOLDS\s+WAITERS\s+SESSIONS\s+LAST TOKEN$/m);
    // No worker can reach an in-process broker from outside, so the partition is never claimed.
    expect(table.stdout).toMatch(/^0\s+standby\s+-\s+-\s+-\s+-\s+-$/m);
    expect(table.stdout).toContain('no lock is held or awaited');
    const raw = await run(['inspect', '--admin', String(url), '--json']);
    expect(raw.code).toBe(0);
    expect(JSON.parse(raw.stdout)).toEqual({ owned: [0], partitions: {}, locks: [], truncated: false });
    const missing = await run(['inspect', 'no-such-lock', '--admin', String(url)]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('"no-such-lock" has no holder or waiter');

    const started = Date.now();
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(service.lines.map((l) => l.msg)).toEqual(expect.arrayContaining(['draining: no new requests are taken; answering the batch in progress', 'exiting']));
    // Nothing per message at info: every line is a lifecycle line.
    expect(service.lines.length).toBeLessThan(12);
  });

  it('inspect exits 1 with a clear message when nothing listens', async () => {
    const r = await run(['inspect', '--admin', 'http://127.0.0.1:9']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("cannot reach the coordinator's admin listener at http://127.0.0.1:9");
  });
});

const rabbit = await requireRabbit();

describe.skipIf(!rabbit)('lockq coordinator on RabbitMQ', () => {
  it('serves workers over amqp:// and shows their holds and queues to inspect', async () => {
    const prefix = `lockq-cli-${process.pid}-${Date.now().toString(36)}`;
    const { service, url } = await Service.ready(['--transport', AMQP_URL, '--prefix', prefix, '--partitions', '2', '--admin-port', '0']);
    // The password never reaches the log.
    expect(JSON.stringify(service.lines)).not.toMatch(/guest:guest|:\/\/[^/]*:[^*/@]+@/);
    const options = { prefix, partitions: 2 } as const;
    const holder = await LockClient.connect(AMQP_URL, { ...options, workerId: 'cli-holder' });
    const waiter = await LockClient.connect(AMQP_URL, { ...options, workerId: 'cli-waiter' });
    try {
      const lease = await holder.acquire('job:7', { ttlMs: 30_000 });
      const queued = waiter.acquire('job:7', { ttlMs: 30_000, waitMs: 30_000 });
      await waitFor(async () => (await holder.inspect('job:7')).lock?.waiterCount === 1, 'the waiter queued on job:7', { intervalMs: 20 });

      const one = await run(['inspect', 'job:7', '--admin', url]);
      expect(one.code).toBe(0);
      expect(one.stdout).toContain('job:7  (mutex; 1 holding, 1 waiting)');
      expect(one.stdout).toMatch(new RegExp(`^  cli-holder\\s+${lease.token}\\s+[\\d.]+s\\s+exclusive\\s+1$`, 'm'));
      expect(one.stdout).toMatch(/^ {2}1\s+cli-waiter\s+[\d.]+s\s+exclusive\s+1$/m);
      const all = await run(['inspect', '--admin', url]);
      expect(all.code).toBe(0);
      expect(all.stdout).toMatch(/^\d\s+active\s+1\s+1\s+1\s+2\s+\d+$/m);
      expect(all.stdout).toMatch(/^\d\s+standby\s+-/m); // the other partition saw no request
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^lockq_waiters\{partition="\d"\} 1$/m);

      await lease.release();
      await (await queued).release();
    } finally {
      await holder.close();
      await waiter.close();
      service.child.kill('SIGTERM');
      expect(await service.exited).toBe(0);
      const conn = await connect(AMQP_URL);
      const ch = await conn.createChannel();
      for (const p of [0, 1]) await ch.deleteQueue(requestDestination(p, prefix));
      await ch.deleteQueue(deadLetterDestination(prefix));
      await ch.deleteExchange(deadLetterDestination(prefix));
      await conn.close();
    }
  });
});
