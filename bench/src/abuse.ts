import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Coordinator, DEFAULT_CORE_LIMITS, MemoryServerTransport } from '@lockq/coordinator';
import { replyDestination } from '@lockq/protocol';
import { LockClient, LockqError } from '@lockq/worker-sdk';
import { MemoryBroker, MemoryClientTransport, refusedByBroker } from '@lockq/worker-sdk/transport';
import { type CoordinatorProbe, metricsProbe, openRawPort, type RawPort, setUpAbuseVhost, startCoordinator } from './abuse-broker.js';
import { cell, ms, printTable, progress } from './report.js';
import { percentile } from './stats.js';

/**
 * `npm run bench -- abuse`: one principal floods a partition with acquires while a well-behaved
 * worker of another principal on the same partition does acquire/release, on the memory
 * transport and on RabbitMQ. The flood is raw bytes, as any process with the flood user's
 * password can send them: from one session, or from 100 sessions of one worker id (1,000 each,
 * the default per-session cap), which side-steps the per-session caps but not the per-principal
 * quotas (docs/security.md §7). Further scenarios limit the flood's principal to 2,000 requests a
 * second (`--principal-rate 2000`, burst 4,000: the rest dropped unread), with and without a
 * bounded request queue (`--max-queue-length`), on RabbitMQ only: on the memory transport the
 * well-behaved worker cycles some 25,000 times a second, far over such a rate itself.
 *
 * Reported: the well-behaved worker's stall (the longest and the 99th percentile acquire+release
 * cycle while the flood lasts), the coordinator's RSS and heap, how fast the flood is settled
 * (answered, refused by the broker, or dropped over its rate) and refused, the codes the flood
 * was answered with, and the coordinator's `lockq_rate_limited_total` and
 * `lockq_forbidden_total`. No target is enforced; the issue's (max stall ≤ 1 s, RSS bounded) are
 * printed beside the figures.
 *
 * The memory scenarios run in a child process each (coordinator, flood and worker share it, so
 * its peak RSS is theirs together), with principals `flood` and `good`. On RabbitMQ each scenario
 * gets a fresh vhost made by `lockq setup-broker` with users for the coordinator, the flood and
 * the worker (`rabbitmqctl` must work; the vhost and users are deleted afterwards); the
 * coordinator is a `lockq coordinator` process logged in as its user (its peak RSS is the
 * kernel's VmHWM). One run each: run the suite again for a second sample.
 * LOCKQ_ABUSE_REQUESTS (default 100000) sizes the flood.
 */

const FLOOD = Number(process.env.LOCKQ_ABUSE_REQUESTS ?? 100_000);
/** The default `maxHoldsPerSession`: one session of the many-sessions flood fills exactly its cap. */
const PER_SESSION = DEFAULT_CORE_LIMITS.maxHoldsPerSession;
const SESSION_TTL_MS = 600_000;
/** The well-behaved worker's pause before it tries again after a failed attempt. */
const RETRY_MS = 20;
/** The longest a flood may take to settle before the scenario reports what it has. */
const SETTLE_DEADLINE_MS = 300_000;

type FloodKind = 'one session' | 'many sessions';

interface Scenario {
  readonly transport: 'memory' | 'amqp';
  readonly flood: FloodKind;
  /** `--principal-rate` (requests a second, burst twice that): the flood's principal's limit. */
  readonly principalRate?: number;
  /** `--max-queue-length`, RabbitMQ only. */
  readonly maxQueueLength?: number;
}

interface AbuseFigures {
  /** Replies to the flood's acquires (any type, RATE_LIMITED included). */
  readonly answered: number;
  /** The flood's acquires refused in any way: error answers, the broker's nacks, drops over the rate. */
  readonly rejected: number;
  readonly refusedByBroker: number;
  /** The flood's replies by type, or by code (with its field) for errors. */
  readonly codes: Readonly<Record<string, number>>;
  /** The coordinator's `lockq_rate_limited_total` and `lockq_forbidden_total` at the end. */
  readonly rateLimited: number;
  readonly forbidden: number;
  /** From the first flood message until every one was answered, refused or dropped. */
  readonly floodMs: number;
  /** False when the flood had not settled by the deadline. */
  readonly settled: boolean;
  readonly rejectionsPerS: number;
  readonly cycles: number;
  readonly maxStallMs: number;
  readonly p99StallMs: number;
  /** The worst cycle before the flood, for comparison. */
  readonly quietMaxMs: number;
  /** The well-behaved worker's failed attempts by code (`TRANSPORT_ERROR refused`: a full queue). */
  readonly goodErrors: Readonly<Record<string, number>>;
  readonly goodReleaseErrors: number;
  readonly rssBaselineBytes: number;
  readonly rssPeakBytes: number;
  readonly heapPeakBytes: number;
}

class Flooder {
  readonly #port: RawPort;
  readonly #worker = 'flood';
  #seq = 0;
  answered = 0;
  /** Error answers to acquires, RATE_LIMITED apart (those requests are counted as dropped). */
  rejected = 0;
  rateLimitedReplies = 0;
  refused = 0;
  lastRejectionAt = 0;
  readonly codes = new Map<string, number>();
  readonly #opened = new Map<string, () => void>();

  constructor(port: RawPort) {
    this.#port = port;
  }

  /** Called with each reply body the flooder's reply address receives. */
  onReply(body: Uint8Array): void {
    const reply = JSON.parse(Buffer.from(body).toString('utf8')) as { type: string; re: string; code?: string; field?: string };
    if (reply.type === 'opened' || (reply.type === 'error' && this.#opened.has(reply.re))) {
      this.#opened.get(reply.re)?.();
      return;
    }
    if (!reply.re.startsWith('a')) return;
    this.answered++;
    const code = reply.type !== 'error' ? reply.type : `${reply.code ?? 'error'}${reply.field === undefined ? '' : ` (${reply.field})`}`;
    this.codes.set(code, (this.codes.get(code) ?? 0) + 1);
    if (reply.type !== 'error') return;
    if (reply.code === 'RATE_LIMITED') this.rateLimitedReplies++;
    else this.rejected++;
    this.lastRejectionAt = performance.now();
  }

  #request(session: string, id: string, fields: object): Buffer {
    const head = { v: 1, id, worker: this.#worker, session, replyTo: this.#port.replyTo };
    return Buffer.from(JSON.stringify({ ...head, ...fields }));
  }

  async open(sessions: number): Promise<string[]> {
    const names = Array.from({ length: sessions }, (_, i) => `flood-s${i}`);
    await Promise.all(
      names.map((session) => {
        const id = `o${session}`;
        const opened = new Promise<void>((resolve) => this.#opened.set(id, resolve));
        void this.#port.send(this.#request(session, id, { op: 'open', sessionTtlMs: SESSION_TTL_MS, partitions: 1 }));
        return opened;
      }),
    );
    return names;
  }

  /** Sends `count` try-lock acquires of distinct names, spread evenly over `sessions`. */
  async flood(sessions: readonly string[], count: number): Promise<void> {
    const pending: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      const session = sessions[Math.floor((i * sessions.length) / count)] as string;
      const body = this.#request(session, `a${++this.#seq}`, { op: 'acquire', lock: `flood:${i}`, ttlMs: SESSION_TTL_MS, waitMs: 0 });
      pending.push(
        this.#port.send(body).then((ok) => {
          if (ok) return;
          this.refused++;
          this.lastRejectionAt = performance.now();
        }),
      );
      await this.#port.ready();
      // Let replies and the worker in now and then, as a sender on another machine would.
      if (i % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(pending);
  }
}

/**
 * The well-behaved worker: acquire/release one lock in a loop. A stall is the time from the first
 * attempt after a completed cycle to the next completed cycle. A failed attempt is counted by
 * code and tried again after {@link RETRY_MS}, and its time counts towards the stall it is part
 * of. The failure a flood causes is a publish the broker refuses (a full request queue): the SDK
 * rejects that acquire at once with a retriable `TRANSPORT_ERROR` (`refused: true`), having
 * forgotten the request (nothing reached the coordinator, so a new attempt is a new request), and
 * this loop asks again; a refused release the SDK sends again itself while the lease may be live.
 * The pause is short and fixed, not a growing backoff, so the stall measures the queue and not
 * the worker's patience; a real worker would back off further (the SDK's own release retry grows
 * from 20 ms to 1 s).
 */
function goodWorker(client: LockClient): {
  stop(): Promise<void>;
  cycles: { at: number; ms: number }[];
  errors: Map<string, number>;
  releaseErrors: number;
} {
  const cycles: { at: number; ms: number }[] = [];
  const errors = new Map<string, number>();
  const state = { running: true, releaseErrors: 0 };
  const loop = (async () => {
    let since = performance.now();
    let failing = false;
    while (state.running) {
      try {
        const lease = await client.acquire('good', { ttlMs: 10_000, waitMs: 60_000 });
        await lease.release().catch((err: unknown) => {
          state.releaseErrors++;
          throw err;
        });
      } catch (err) {
        const code = err instanceof LockqError ? err.code : 'other';
        const key = refusedByBroker(err) ? `${code} refused` : code;
        errors.set(key, (errors.get(key) ?? 0) + 1);
        failing = true;
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
        continue;
      }
      const now = performance.now();
      cycles.push({ at: since, ms: now - since });
      since = now;
      failing = false;
    }
    // Still stalled when the measurement ended: that counts too.
    if (failing) cycles.push({ at: since, ms: performance.now() - since });
  })();
  return {
    cycles,
    errors,
    get releaseErrors() {
      return state.releaseErrors;
    },
    async stop() {
      state.running = false;
      await loop;
    },
  };
}

/** One flood against a running coordinator; the worker's client is already connected. */
async function measure(kind: FloodKind, flooder: Flooder, client: LockClient, probe: CoordinatorProbe): Promise<AbuseFigures> {
  const sessions = await flooder.open(kind === 'one session' ? 1 : Math.ceil(FLOOD / PER_SESSION));
  const worker = goodWorker(client);
  await new Promise((resolve) => setTimeout(resolve, 1000)); // a quiet second to compare with
  const baseline = await probe.sample();
  const refusalsBefore = await probe.refusals();
  let heapPeak = baseline.heap;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const s = await probe.sample().catch(() => undefined);
      if (s !== undefined) heapPeak = Math.max(heapPeak, s.heap);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  })();
  const start = performance.now();
  await flooder.flood(sessions, FLOOD);
  // Settled: every acquire answered (RATE_LIMITED answers are among the drops), refused by the
  // broker, dropped over its rate, or refused FORBIDDEN (never answered); the drops are only
  // seen in the coordinator's counters, read every 100 ms.
  const deadline = start + SETTLE_DEADLINE_MS;
  let refusals = refusalsBefore;
  let lastDropAt = 0;
  const seen = () => flooder.answered - flooder.rateLimitedReplies + flooder.refused + dropped(refusals, refusalsBefore);
  for (let polls = 0; seen() < FLOOD && performance.now() < deadline; polls++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
    if (polls % 5 !== 4) continue;
    const now = await probe.refusals().catch(() => refusals);
    if (now.rateLimited > refusals.rateLimited) lastDropAt = performance.now();
    refusals = now;
  }
  const floodMs = performance.now() - start;
  const settled = seen() >= FLOOD;
  await new Promise((resolve) => setTimeout(resolve, 500)); // the worker's cycle in flight ends
  await worker.stop();
  sampling = false;
  await sampler;
  refusals = await probe.refusals().catch(() => refusals);
  const during = worker.cycles.filter((c) => c.at + c.ms >= start).map((c) => c.ms).sort((a, b) => a - b);
  const quiet = worker.cycles.filter((c) => c.at + c.ms < start).map((c) => c.ms);
  const rateLimited = refusals.rateLimited - refusalsBefore.rateLimited;
  const rejected = flooder.rejected + flooder.refused + rateLimited;
  const lastRejectionAt = Math.max(flooder.lastRejectionAt, lastDropAt);
  return {
    answered: flooder.answered,
    rejected,
    refusedByBroker: flooder.refused,
    codes: Object.fromEntries(flooder.codes),
    rateLimited: refusals.rateLimited,
    forbidden: refusals.forbidden,
    floodMs,
    settled,
    rejectionsPerS: rejected === 0 || lastRejectionAt === 0 ? Number.NaN : rejected / ((lastRejectionAt - start) / 1000),
    cycles: during.length,
    maxStallMs: during.at(-1) ?? Number.NaN,
    p99StallMs: percentile(during, 99),
    quietMaxMs: Math.max(...quiet),
    goodErrors: Object.fromEntries(worker.errors),
    goodReleaseErrors: worker.releaseErrors,
    rssBaselineBytes: baseline.rss,
    rssPeakBytes: await probe.peakRss(),
    heapPeakBytes: heapPeak,
  };
}

/** The flood's requests the coordinator dropped or refused unanswered since `before`. */
function dropped(now: { rateLimited: number; forbidden: number }, before: { rateLimited: number; forbidden: number }): number {
  return (now.rateLimited - before.rateLimited || 0) + (now.forbidden - before.forbidden || 0);
}

/** A memory scenario, in this (child) process: principals `flood` and `good`. */
async function memoryScenario(s: Scenario): Promise<AbuseFigures> {
  const broker = new MemoryBroker();
  const transport = new MemoryServerTransport(broker);
  const rate = s.principalRate;
  const coordinator = await Coordinator.start(rate === undefined ? { transport } : { transport, principalRate: { perSecond: rate, burst: 2 * rate } });
  const replyTo = replyDestination('flood', 'flood', 'raw', transport.prefix);
  const port: RawPort = {
    replyTo,
    send: async (body) => {
      broker.publishRequest(0, body, 'flood');
      return true;
    },
    ready: async () => undefined,
    close: async () => broker.unsubscribeReplies(replyTo),
  };
  const flooder = new Flooder(port);
  broker.subscribeReplies(replyTo, (body) => flooder.onReply(body));
  const client = await LockClient.connect('memory:', {
    workerId: 'good',
    requestTimeoutMs: 120_000,
    transport: new MemoryClientTransport(broker, { workerId: 'good', instance: 'x', principal: 'good' }),
  });
  const probe: CoordinatorProbe = {
    sample: async () => ({ rss: process.memoryUsage.rss(), heap: process.memoryUsage().heapUsed }),
    peakRss: async () => process.resourceUsage().maxRSS * 1024,
    refusals: async () => {
      let forbidden = 0;
      for (const [, p] of coordinator.stats.partitions()) for (const n of p.forbidden.values()) forbidden += n;
      return { rateLimited: coordinator.stats.total('rateLimited'), forbidden };
    },
  };
  try {
    return await measure(s.flood, flooder, client, probe);
  } finally {
    await client.close().catch(() => undefined);
    await coordinator.stop();
    await port.close();
  }
}

/** A RabbitMQ scenario: a fresh vhost and users, a `lockq coordinator` process, the flood, the worker. */
async function amqpScenario(s: Scenario): Promise<AbuseFigures> {
  const vhost = await setUpAbuseVhost();
  const extra: string[] = [];
  if (s.principalRate !== undefined) extra.push('--principal-rate', String(s.principalRate));
  if (s.maxQueueLength !== undefined) extra.push('--max-queue-length', String(s.maxQueueLength));
  let coordinator: Awaited<ReturnType<typeof startCoordinator>> | undefined;
  let port: RawPort | undefined;
  let client: LockClient | undefined;
  // An interrupt must not leave the vhost and its users behind on a shared broker.
  const onSignal = () => {
    coordinator?.child.kill('SIGKILL');
    void vhost.drop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // At info it logs its life cycle (the ready line carries the admin URL), never per message.
    coordinator = await startCoordinator(vhost.urls.coordinator, vhost.prefix, extra);
    let flooder: Flooder | undefined;
    port = await openRawPort(vhost.urls.flood, vhost.prefix, vhost.flood, (body) => flooder?.onReply(body));
    flooder = new Flooder(port);
    client = await LockClient.connect(vhost.urls.good, { workerId: 'good', prefix: vhost.prefix, requestTimeoutMs: 120_000 });
    return await measure(s.flood, flooder, client, metricsProbe(coordinator.admin, coordinator.child.pid ?? 0));
  } finally {
    await client?.close().catch(() => undefined);
    await port?.close();
    if (coordinator !== undefined && coordinator.child.exitCode === null) {
      coordinator.child.kill('SIGTERM');
      await once(coordinator.child, 'exit');
    }
    await vhost.drop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Runs a memory scenario in a child process of its own, so that its peak RSS is its own. */
async function inChild(s: Scenario): Promise<AbuseFigures> {
  const child = fork(fileURLToPath(import.meta.url), ['child', JSON.stringify(s)], { stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  const [message] = (await once(child, 'message')) as [Record<string, unknown>];
  await once(child, 'exit');
  // IPC carries JSON, which turns NaN (not measured) into null.
  return Object.fromEntries(Object.entries(message).map(([k, v]) => [k, v ?? Number.NaN])) as unknown as AbuseFigures;
}

function label(s: Scenario): string {
  const parts = [s.transport === 'memory' ? 'memory' : 'RabbitMQ', s.flood === 'one session' ? 'one session' : `${Math.ceil(FLOOD / PER_SESSION)} sessions`];
  if (s.principalRate !== undefined) parts.push(`--principal-rate ${s.principalRate}`);
  if (s.maxQueueLength !== undefined) parts.push(`--max-queue-length ${s.maxQueueLength}`);
  return parts.join(', ');
}

/** `{ a: 1, b: 2 }` as "a 1, b 2"; '-' when empty. */
function counts(record: Readonly<Record<string, number>>): string {
  const entries = Object.entries(record).sort(([, a], [, b]) => b - a);
  return entries.length === 0 ? '-' : entries.map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`).join(', ');
}

const MB = 1024 * 1024;

export async function abuseSuite(): Promise<void> {
  const quotas = Object.entries(DEFAULT_CORE_LIMITS)
    .filter(([name]) => name.endsWith('PerPrincipal'))
    .map(([name, n]) => `${name} ${n.toLocaleString('en-US')}`)
    .join(', ');
  console.log(`abuse: ${FLOOD.toLocaleString('en-US')} raw acquires from principal "flood" on one partition beside a well-behaved worker of principal "good" (one run each)`);
  console.log(`  default limits: maxHoldsPerSession ${PER_SESSION.toLocaleString('en-US')}; ${quotas}`);
  const scenarios: Scenario[] = [
    { transport: 'memory', flood: 'one session' },
    { transport: 'memory', flood: 'many sessions' },
    { transport: 'amqp', flood: 'one session' },
    { transport: 'amqp', flood: 'many sessions' },
    { transport: 'amqp', flood: 'one session', maxQueueLength: 10_000 },
    { transport: 'amqp', flood: 'one session', principalRate: 2000 },
    { transport: 'amqp', flood: 'one session', principalRate: 2000, maxQueueLength: 10_000 },
    { transport: 'amqp', flood: 'one session', principalRate: 2000, maxQueueLength: 2000 },
  ];
  const rows: string[][] = [];
  const refusalRows: string[][] = [];
  for (const s of scenarios) {
    const name = label(s);
    progress(name);
    let f: AbuseFigures;
    try {
      f = s.transport === 'memory' ? await inChild(s) : await amqpScenario(s);
    } catch (err) {
      console.log(`!! ${name} failed: ${err instanceof Error ? err.message : String(err)}`);
      continue;
    }
    if (!f.settled) console.log(`!! ${name}: the flood had not settled after ${SETTLE_DEADLINE_MS / 1000} s; figures are up to then`);
    rows.push([
      name,
      ms(f.quietMaxMs),
      ms(f.maxStallMs),
      ms(f.p99StallMs),
      Number.isNaN(f.maxStallMs) ? '-' : f.maxStallMs <= 1000 ? '✓' : '✗',
      cell(f.cycles),
      cell(f.rssBaselineBytes / MB),
      cell(f.rssPeakBytes / MB),
      cell(f.heapPeakBytes / MB),
      cell(f.floodMs / 1000, 1),
      cell(f.rejected),
      cell(f.rejectionsPerS),
    ]);
    const releases = f.goodReleaseErrors > 0 ? ` (releases ${f.goodReleaseErrors})` : '';
    refusalRows.push([name, counts(f.codes), cell(f.refusedByBroker), cell(f.rateLimited), cell(f.forbidden), `${counts(f.goodErrors)}${releases}`]);
  }
  printTable(
    ['scenario', 'quiet max ms', 'max stall ms', 'p99 ms', '≤ 1 s', 'cycles', 'RSS before MB', 'RSS peak MB', 'heap peak MB', 'flood s', 'rejected', 'rejected/s'],
    rows,
    (i) => i > 0 && i !== 4,
  );
  console.log('');
  printTable(['scenario', "the flood's answers", 'refused by broker', 'rate_limited_total', 'forbidden_total', "the worker's failed attempts"], refusalRows, (i) => i >= 2 && i <= 4);
  console.log('  targets (issue 9, not enforced): max stall ≤ 1,000 ms; RSS bounded whatever the flood');
  console.log('  rejected = error answers + refused by the broker + dropped over the rate; rate_limited_total counts every drop, the RATE_LIMITED answers among them');
}

if (process.argv[2] === 'child' && import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const figures = await memoryScenario(JSON.parse(process.argv[3] ?? '{}') as Scenario);
  process.send?.(figures, () => process.exit(0));
}
