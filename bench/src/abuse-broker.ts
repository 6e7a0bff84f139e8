import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { replyDestination, requestExchange } from '@lockq/protocol';
import { AMQP_URL } from './lockq-amqp.js';

/**
 * The RabbitMQ side of the abuse bench: a fresh vhost with a user per principal made by
 * `lockq setup-broker` (docs/security.md §5.4), a `lockq coordinator` process logged in as its
 * own user, a raw publisher speaking as the flood's user, and what the coordinator's admin
 * listener says about its memory and its refusals.
 */

const CLI = fileURLToPath(new URL('../../cli/dist/main.js', import.meta.url));
const execFileP = promisify(execFile);

/** The flooder's view of a broker: raw bytes out, raw replies in. */
export interface RawPort {
  readonly replyTo: string;
  /** Resolves with false when the broker refused the message (a full queue). */
  send(body: Buffer): Promise<boolean>;
  /** Resolves once the port can take more (the socket drained). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** A vhost of one run and the connection URL of each of its users, by role. */
export interface AbuseVhost {
  readonly vhost: string;
  readonly prefix: string;
  readonly urls: { readonly coordinator: string; readonly flood: string; readonly good: string };
  /** The principals (the broker users) of the flood and of the well-behaved worker. */
  readonly flood: string;
  readonly good: string;
  /** Deletes the vhost (every queue and exchange in it) and the users. */
  drop(): Promise<void>;
}

/**
 * Makes a vhost with users `<run>-coord`, `<run>-flood` and `<run>-good` with the built
 * `lockq setup-broker` (so `rabbitmqctl` must work here). Users are broker-wide: the run id keeps
 * them apart from anyone else's on the shared broker.
 */
export async function setUpAbuseVhost(): Promise<AbuseVhost> {
  const run = `abuse-${Date.now().toString(36)}${process.pid.toString(36)}`;
  const vhost = `lockq-bench-${run}`;
  const prefix = 'lockq';
  const users = { coordinator: `${run}-coord`, flood: `${run}-flood`, good: `${run}-good` };
  const drop = async () => {
    await execFileP('rabbitmqctl', ['-q', 'delete_vhost', vhost], { timeout: 30_000 }).catch(() => undefined);
    for (const u of Object.values(users)) await execFileP('rabbitmqctl', ['-q', 'delete_user', u], { timeout: 30_000 }).catch(() => undefined);
  };
  const args = ['setup-broker', '--vhost', vhost, '--prefix', prefix, '--host', new URL(AMQP_URL).host];
  args.push('--coordinator', users.coordinator, '--worker', users.flood, '--worker', users.good);
  let stdout: string;
  try {
    ({ stdout } = await execFileP(process.execPath, [CLI, ...args], { timeout: 60_000, env: cliEnv() }));
  } catch (err) {
    await drop();
    throw new Error(`lockq setup-broker failed (it needs rabbitmqctl): ${err instanceof Error ? err.message : String(err)}`);
  }
  // "  <user>  amqp://<user>:<password>@host/vhost", once per user given a password.
  const printed = new Map([...stdout.matchAll(/^ {2}(\S+) +(amqp:\/\/\S+)$/gm)].map((m) => [m[1] as string, m[2] as string]));
  const url = (user: string) => {
    const u = printed.get(user);
    if (u === undefined) throw new Error(`lockq setup-broker printed no URL for ${user} (did the user exist already?)`);
    return u;
  };
  try {
    return { vhost, prefix, urls: { coordinator: url(users.coordinator), flood: url(users.flood), good: url(users.good) }, flood: users.flood, good: users.good, drop };
  } catch (err) {
    await drop();
    throw err;
  }
}

/** The CLI's environment without LOCKQ_* settings, so only the flags given here apply. */
function cliEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('LOCKQ_')));
}

/** `lockq coordinator` on RabbitMQ, its admin URL once it is ready. */
export async function startCoordinator(url: string, prefix: string, extra: readonly string[]): Promise<{ child: ChildProcess; admin: string }> {
  const child = spawn(process.execPath, [CLI, 'coordinator', '--transport', url, '--prefix', prefix, '--admin-port', '0', ...extra], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: cliEnv(),
  });
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  const admin = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (d: string) => {
      buffer += d;
      for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        let parsed: { msg?: string; admin?: string };
        try {
          parsed = JSON.parse(line) as typeof parsed;
        } catch {
          continue;
        }
        if (parsed.msg === 'coordinator ready') resolve(String(parsed.admin));
      }
    });
    child.once('exit', (code) => reject(new Error(`lockq coordinator exited (${code}) before it was ready`)));
    setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('lockq coordinator was not ready within 30 s'));
    }, 30_000).unref();
  });
  // Its log is read no further (at info it never logs per message), but must not fill the pipe.
  child.stdout?.removeAllListeners('data');
  child.stdout?.resume();
  return { child, admin };
}

/**
 * A raw publisher logged in as `principal`: requests through `<prefix>.requests` with routing key
 * `0` and `user_id` = the principal (the broker checks it), on a confirm channel so a full queue's
 * refusal is seen; replies on an exclusive queue in the principal's reply namespace. No SDK: this
 * is what any process holding that user's password can send.
 */
export async function openRawPort(url: string, prefix: string, principal: string, onReply: (body: Uint8Array) => void): Promise<RawPort> {
  const amqp = await import('amqplib');
  const conn = await amqp.connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    const replyTo = replyDestination(principal, 'flood', 'raw', prefix);
    await ch.assertQueue(replyTo, { exclusive: true });
    await ch.consume(replyTo, (msg) => msg !== null && onReply(msg.content), { noAck: true });
    const exchange = requestExchange(prefix);
    const properties = { userId: principal };
    let full = false;
    return {
      replyTo,
      send: (body) =>
        new Promise<boolean>((resolve) => {
          full = !ch.publish(exchange, '0', body, properties, (err) => resolve(err == null));
        }),
      // Back-pressure: wait for the socket to drain instead of buffering the whole flood.
      ready: async () => {
        if (!full) return;
        full = false;
        await once(ch, 'drain');
      },
      close: () => conn.close().catch(() => undefined),
    };
  } catch (err) {
    await conn.close().catch(() => undefined);
    throw err;
  }
}

/** What the abuse bench reads of a coordinator, however it is reached. */
export interface CoordinatorProbe {
  sample(): Promise<{ rss: number; heap: number }>;
  peakRss(): Promise<number>;
  /** `lockq_rate_limited_total` and `lockq_forbidden_total` (all reasons), over all partitions. */
  refusals(): Promise<{ rateLimited: number; forbidden: number }>;
}

/** A `lockq coordinator` process seen through its `/metrics` (and its peak RSS through /proc). */
export function metricsProbe(admin: string, pid: number): CoordinatorProbe {
  const scrape = async () => (await fetch(`${admin}/metrics`)).text();
  return {
    async sample() {
      const text = await scrape();
      return { rss: metricSum(text, 'process_resident_memory_bytes'), heap: metricSum(text, 'nodejs_heap_size_used_bytes') };
    },
    async peakRss() {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      return Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? Number.NaN) * 1024;
    },
    async refusals() {
      const text = await scrape();
      return { rateLimited: metricSum(text, 'lockq_rate_limited_total'), forbidden: metricSum(text, 'lockq_forbidden_total') };
    },
  };
}

/**
 * The sum of every series of metric `name` in a Prometheus text exposition: 0 when it is exposed
 * with no series yet (a labelled counter nothing has counted), NaN when it is not exposed at all.
 */
function metricSum(text: string, name: string): number {
  let sum = text.includes(`# TYPE ${name} `) ? 0 : Number.NaN;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum = (Number.isNaN(sum) ? 0 : sum) + Number(m[1]);
  return sum;
}
