import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';

// The built CLI, as users run it: `npm test` builds first (tsc -b).
const CLI = fileURLToPath(new URL('../coordinator/dist/cli/main.js', import.meta.url));

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

function run(args: readonly string[], timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
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
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<number | null>;
  #buffer = '';
  #waiters: (() => void)[] = [];

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [CLI, 'coordinator', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      this.#buffer += d;
      let nl = this.#buffer.indexOf('\n');
      while (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        this.lines.push(JSON.parse(line) as LogLine);
        nl = this.#buffer.indexOf('\n');
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => process.stderr.write(d));
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  async line(msg: string, timeoutMs = 10_000): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.find((l) => l.msg === msg);
      if (found !== undefined) return found;
      if (Date.now() > deadline) throw new Error(`no "${msg}" log line; got ${JSON.stringify(this.lines)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
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
    const scheme = await run(['coordinator', '--transport', 'kafka://x']);
    expect(scheme.code).toBe(2);
    expect(scheme.stderr).toContain('unsupported scheme');
    const own = await run(['coordinator', '--transport', 'memory:', '--partitions', '2', '--own', '0,2']);
    expect(own.code).toBe(2);
    expect(own.stderr).toContain('--own: expected an integer from 0 to 1, got "2"');
    const store = await run(['coordinator', '--transport', 'memory:', '--store', 'redis://localhost', '--admin-port', '0']);
    if (!existsSync(fileURLToPath(new URL('../coordinator/dist/store/redis-store.js', import.meta.url)))) {
      expect(store.code).toBe(2);
      expect(store.stderr).toContain('--store is not supported yet');
    }
  });

  it('demo runs a fleet and reports no stale writes', async () => {
    const r = await run(['demo', '--seconds', '2', '--workers', '4']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^done: 4 workers, 2s/m);
    expect(r.stdout).toContain('stale writes: 0');
  });

  it('coordinator serves admin and inspect, and drains on SIGTERM with exit 0', async () => {
    const service = new Service(['--transport', 'memory:', '--admin-port', '0']);
    services.push(service);
    const ready = await service.line('coordinator ready');
    const url = ready.admin;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(ready.component).toBe('cli');
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
