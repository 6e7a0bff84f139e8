import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LockClient } from '@lockq/worker-sdk';
import { deadLetterDestination, partitionOf, requestDestination } from '@lockq/protocol';
import { connect } from 'amqplib';
import { AMQP_URL } from './brokers.js';
import { FencedResource } from './fenced-resource.js';
import { type FifoRound, type HistoryReport, checkHistory, seededRandom } from './faults-history.js';
import { CLAIMED, CoordinatorProcess, type LogLine, requireBuilt, type WorkerEvent, WorkerProcess } from './faults-processes.js';
import { FaultsRedis } from './faults-redis.js';
import { elapse, waitFor } from './wait-for.js';


/**
 * The broker a rig's coordinators and workers talk through: RabbitMQ ({@link AMQP_FAULT_BROKER},
 * the default) or Kafka (`kafkaFaultBroker` in test/support/faults-kafka.ts).
 */
export interface FaultBroker {
  /** `lockq coordinator` flags naming the transport (and what it needs there, e.g. `--identity off`). */
  coordinatorFlags(rig: FaultRig): string[];
  /** The URL workers and the rig's probe connect with. */
  readonly workerUrl: string;
  /** Removes what a rig of `prefix` left on the broker (queues, topics, groups). */
  cleanup(prefix: string, partitions: number): Promise<void>;
}

/** RabbitMQ: the coordinators' AMQP heartbeat is `coordinatorHeartbeatS`, passed on the URL. */
export const AMQP_FAULT_BROKER: FaultBroker = {
  coordinatorFlags(rig) {
    const u = new URL(AMQP_URL);
    u.searchParams.set('heartbeat', String(rig.o.coordinatorHeartbeatS));
    return ['--transport', u.toString()];
  },
  workerUrl: AMQP_URL,
  async cleanup(prefix, partitions) {
    const conn = await connect(AMQP_URL);
    const ch = await conn.createChannel();
    for (let p = 0; p < partitions; p++) await ch.deleteQueue(requestDestination(p, prefix));
    await ch.deleteQueue(deadLetterDestination(prefix));
    await ch.deleteExchange(deadLetterDestination(prefix));
    await conn.close();
  },
};

export interface RigOptions {
  /** Short name of the scenario, part of every queue and key name. */
  readonly name: string;
  readonly seed: number;
  /** @defaultValue {@link AMQP_FAULT_BROKER} */
  readonly broker?: FaultBroker;
  /** `--store` of the coordinators. @defaultValue the rig's own redis-server */
  readonly store?: string;
  /** @defaultValue 2 */
  readonly partitions?: number;
  /** AMQP heartbeat of the coordinators, in seconds (a `heartbeat` query parameter on --transport). */
  readonly coordinatorHeartbeatS?: number;
  /** Increment workers. @defaultValue 4 */
  readonly workers?: number;
  /** Counter locks the increment workers share. @defaultValue 3 */
  readonly counters?: number;
  /** Waiters of each gated FIFO round. @defaultValue 4 */
  readonly fifoWaiters?: number;
  /** Lease of the increment workers (auto-renewed). @defaultValue 3000 */
  readonly ttlMs?: number;
  /** SDK: how long to wait for the first answer before TIMEOUT. @defaultValue 30000 */
  readonly requestTimeoutMs?: number;
  /** @defaultValue 60000 (outlives every outage the scenarios cause) */
  readonly sessionTtlMs?: number;
  /** Longest pause between two increments. @defaultValue 20 */
  readonly thinkMs?: number;
  /** Lease of the FIFO gate (auto-renewed). @defaultValue 30000 */
  readonly gateTtlMs?: number;
  /** Workers report every request and reply (`sent` / `reply` events; for debugging). @defaultValue false */
  readonly trace?: boolean;
}

/** Lock names of the form `<stem>-<i>`, `count` of them, covering every partition when count allows. */
function spreadNames(stem: string, count: number, partitions: number): string[] {
  const names: string[] = [];
  const seen = new Set<number>();
  for (let i = 0; names.length < count && i < 10_000; i++) {
    const name = `${stem}-${i}`;
    const p = partitionOf(name, partitions);
    if (seen.size < Math.min(count, partitions) && seen.has(p)) continue;
    seen.add(p);
    names.push(name);
  }
  return names;
}

export interface Takeover {
  /** The coordinator that took over. */
  readonly by: CoordinatorProcess;
  /** From the fault to its first 'partition claimed' line. */
  readonly claimMs: number;
  /** From the fault to every partition claimed. */
  readonly allClaimedMs: number;
  /** From the fault to the first grant a worker got from the new term. */
  readonly grantMs: number;
  readonly epochs: readonly number[];
}

/**
 * Everything a fault scenario runs: its own redis-server (the store), a fenced resource, a unique
 * prefix on the shared broker (RabbitMQ, or Kafka: see {@link FaultBroker}), `lockq coordinator`
 * processes, increment workers (the load) and a gate plus waiters for gated FIFO rounds. Kill it
 * with {@link destroy}.
 */
export class FaultRig {
  readonly o: Required<RigOptions>;
  readonly prefix: string;
  readonly redis: FaultsRedis;
  readonly resource: FencedResource;
  readonly counters: readonly string[];
  readonly fifoLock: string;
  readonly coordinators: CoordinatorProcess[] = [];
  readonly load: WorkerProcess[] = [];
  readonly queuers: WorkerProcess[] = [];
  gate: WorkerProcess | undefined;
  readonly rounds: FifoRound[] = [];
  readonly random: () => number;
  #coordinatorSeq = 0;
  #probe: Promise<LockClient> | undefined;

  private constructor(o: RigOptions, redis: FaultsRedis, resource: FencedResource) {
    this.o = {
      broker: AMQP_FAULT_BROKER,
      store: redis.url,
      partitions: 2,
      coordinatorHeartbeatS: 10,
      workers: 4,
      counters: 3,
      fifoWaiters: 4,
      ttlMs: 3000,
      requestTimeoutMs: 30_000,
      sessionTtlMs: 60_000,
      thinkMs: 20,
      gateTtlMs: 30_000,
      trace: process.env.LOCKQ_FAULT_TRACE === '1',
      ...o,
    };
    this.prefix = `lockq-faults-${o.name}-${process.pid}-${Date.now().toString(36)}`;
    this.redis = redis;
    this.resource = resource;
    this.counters = spreadNames('counter', this.o.counters, this.o.partitions);
    this.fifoLock = spreadNames('fifo', 1, this.o.partitions)[0] as string;
    this.random = seededRandom(o.seed);
  }

  static async start(o: RigOptions): Promise<FaultRig> {
    requireBuilt();
    const redis = await FaultsRedis.start();
    const resource = new FencedResource();
    await resource.start();
    return new FaultRig(o, redis, resource);
  }

  /**
   * The prologue every scenario shares: an active and a standby coordinator, the workers, the
   * first claim of every partition, and some progress under load.
   */
  static async underLoad(o: RigOptions): Promise<{ rig: FaultRig; partitions: number[]; began: number }> {
    const rig = await FaultRig.start(o);
    const partitions = Array.from({ length: rig.o.partitions }, (_, p) => p);
    const began = Date.now();
    await rig.startCoordinator(); // first to consume: active
    await rig.startCoordinator(); // standby
    await rig.startWorkers();
    await rig.takeover(began, partitions, 30_000);
    await rig.progress(20, 30_000);
    return { rig, partitions, began };
  }

  partitionOf(lock: string): number {
    return partitionOf(lock, this.o.partitions);
  }

  // ---- coordinators -------------------------------------------------------------------------

  /** Starts a `lockq coordinator` and waits until it consumes (a standby, unless none is active). */
  async startCoordinator(): Promise<CoordinatorProcess> {
    const name = `coordinator-${String.fromCharCode(65 + (this.#coordinatorSeq % 26))}${Math.floor(this.#coordinatorSeq / 26) || ''}`;
    this.#coordinatorSeq++;
    const c = new CoordinatorProcess(name, [
      ...this.o.broker.coordinatorFlags(this),
      '--store', this.o.store,
      '--prefix', this.prefix,
      '--partitions', String(this.o.partitions),
      '--admin-port', '0',
      '--log-level', 'info',
    ]);
    this.coordinators.push(c);
    await c.ready();
    return c;
  }

  get live(): CoordinatorProcess[] {
    return this.coordinators.filter((c) => c.alive);
  }

  /** For each partition, the coordinator (live or not) whose claim of it is the latest. */
  owners(): Map<number, CoordinatorProcess> {
    const latest = new Map<number, { c: CoordinatorProcess; at: number }>();
    for (const c of this.coordinators) {
      for (const l of c.claims()) {
        if (l.partition === undefined) continue;
        const best = latest.get(l.partition);
        if (best === undefined || l.time >= best.at) latest.set(l.partition, { c, at: l.time });
      }
    }
    return new Map([...latest].map(([p, { c }]) => [p, c]));
  }

  /** The live coordinator that owns the most partitions (claimed them last): the active one. */
  active(): CoordinatorProcess | undefined {
    const count = new Map<CoordinatorProcess, number>();
    for (const c of this.owners().values()) if (c.alive) count.set(c, (count.get(c) ?? 0) + 1);
    let best: CoordinatorProcess | undefined;
    for (const [c, n] of count) if (best === undefined || n > (count.get(best) ?? 0)) best = c;
    return best;
  }

  /** The partitions `c` owns (claimed last). */
  ownedBy(c: CoordinatorProcess): number[] {
    return [...this.owners()].filter(([, owner]) => owner === c).map(([p]) => p);
  }

  /**
   * Waits until live coordinators other than `exclude` have claimed every one of `partitions`
   * at or after `since` (a fault's moment, ms since the epoch), and a worker was granted a lock
   * of one of them by such a new term (a token above what the claim started from). Throws after
   * `timeoutMs`.
   */
  async takeover(since: number, partitions: readonly number[], timeoutMs: number, exclude?: CoordinatorProcess): Promise<Takeover> {
    let found: Takeover | undefined;
    await waitFor(
      () => {
        found = this.#takeover(since, partitions, exclude);
        return found !== undefined;
      },
      () => `a take-over of partitions ${partitions.join(',')} since ${since}\n${this.diagnostics()}`,
      { timeoutMs, intervalMs: 25 },
    );
    return found!;
  }

  #takeover(since: number, partitions: readonly number[], exclude?: CoordinatorProcess): Takeover | undefined {
    // The first claim of each partition since the fault: any later term issues tokens above it too.
    const claims = new Map<number, { c: CoordinatorProcess; line: LogLine }>();
    for (const c of this.live) {
      if (c === exclude) continue;
      for (const line of c.claims(since)) {
        if (line.partition === undefined || !partitions.includes(line.partition)) continue;
        const seen = claims.get(line.partition);
        if (seen === undefined || line.time < seen.line.time) claims.set(line.partition, { c, line });
      }
    }
    if (claims.size < partitions.length) return undefined;
    let grant: { at: number; c: CoordinatorProcess } | undefined;
    for (const e of this.events()) {
      if (e.event !== 'granted' || e.at < since || e.lock === undefined) continue;
      const claim = claims.get(this.partitionOf(e.lock));
      if (claim === undefined || (e.token ?? 0) <= (claim.line.lastToken ?? Number.POSITIVE_INFINITY)) continue;
      if (grant === undefined || e.at < grant.at) grant = { at: e.at, c: claim.c };
    }
    if (grant === undefined) return undefined;
    const times = [...claims.values()].map(({ line }) => line.time);
    return {
      by: grant.c,
      claimMs: Math.min(...times) - since,
      allClaimedMs: Math.max(...times) - since,
      grantMs: grant.at - since,
      epochs: [...claims.values()].map(({ line }) => line.epoch ?? -1),
    };
  }

  /** The first grant any worker got at or after `since` (ms since the epoch); waits up to `timeoutMs`. */
  async firstGrantAfter(since: number, timeoutMs: number): Promise<WorkerEvent> {
    let first: WorkerEvent | undefined;
    const seek = (): boolean => {
      for (const e of this.events()) if (e.event === 'granted' && e.at >= since && (first === undefined || e.at < first.at)) first = e;
      return first !== undefined;
    };
    await waitFor(seek, () => `a grant since ${since}\n${this.diagnostics()}`, { timeoutMs, intervalMs: 25 });
    return first!;
  }

  /**
   * Has the active coordinator of `lock`'s partition answer an inspect from this process, and
   * resolves once the answer is here: that coordinator has just published on its connection.
   */
  async ping(lock: string): Promise<void> {
    this.#probe ??= LockClient.connect(this.o.broker.workerUrl, { workerId: 'faults-probe', prefix: this.prefix, partitions: this.o.partitions, requestTimeoutMs: 30_000 });
    await (await this.#probe).inspect(lock);
  }

  // ---- workers ------------------------------------------------------------------------------

  #workerConfig(role: 'increment' | 'fifo', seed: number) {
    return {
      url: this.o.broker.workerUrl,
      prefix: this.prefix,
      partitions: this.o.partitions,
      resource: this.resource.url,
      role,
      locks: role === 'increment' ? this.counters : [this.fifoLock],
      seed,
      ttlMs: role === 'increment' ? this.o.ttlMs : this.o.gateTtlMs,
      waitMs: 60_000,
      requestTimeoutMs: this.o.requestTimeoutMs,
      sessionTtlMs: this.o.sessionTtlMs,
      thinkMs: this.o.thinkMs,
      trace: this.o.trace,
    };
  }

  /** Starts the increment workers (the load) and the FIFO gate and waiters; waits until all are connected. */
  async startWorkers(): Promise<void> {
    for (let i = 0; i < this.o.workers; i++) {
      this.load.push(new WorkerProcess(`load-${i}`, this.#workerConfig('increment', this.o.seed * 31 + i)));
    }
    this.gate = new WorkerProcess('gate', this.#workerConfig('fifo', 0));
    for (let i = 0; i < this.o.fifoWaiters; i++) this.queuers.push(new WorkerProcess(`fifo-${i}`, this.#workerConfig('fifo', 0)));
    await Promise.all(this.workers.map((w) => w.next('ready', 30_000)));
  }

  get workers(): WorkerProcess[] {
    return [...this.load, ...(this.gate === undefined ? [] : [this.gate]), ...this.queuers];
  }

  events(): WorkerEvent[] {
    return this.workers.flatMap((w) => w.events);
  }

  /** Grants so far, to see the load go on. */
  grantCount(): number {
    let n = 0;
    for (const w of this.load) for (const e of w.events) if (e.event === 'granted') n++;
    return n;
  }

  /** Waits until the load has been granted `count` more locks. */
  async progress(count: number, timeoutMs: number): Promise<void> {
    const target = this.grantCount() + count;
    await waitFor(() => this.grantCount() >= target, () => `progress of the load\n${this.diagnostics()}`, { timeoutMs, intervalMs: 25 });
  }

  /** Tells the increment workers to stop after their current iteration and waits until all have. */
  async pauseLoad(timeoutMs = 60_000): Promise<void> {
    const from = this.load.map((w) => w.lines.length);
    for (const w of this.load) w.send({ cmd: 'pause' });
    await Promise.all(this.load.map((w, i) => w.next('paused', timeoutMs, from[i])));
  }

  resumeLoad(): void {
    for (const w of this.load) w.send({ cmd: 'resume' });
  }

  /**
   * One gated FIFO round on the FIFO lock: the gate takes it, the waiters queue one after the
   * other (each only once the previous was told its position), `whileQueued` runs (the fault),
   * then the gate releases and every waiter must be granted in the order it queued.
   */
  async fifoRound(whileQueued: () => Promise<void>, timeoutMs = 90_000): Promise<FifoRound> {
    const gate = this.gate;
    if (gate === undefined) throw new Error('startWorkers first');
    const g0 = gate.lines.length;
    gate.send({ cmd: 'hold' });
    const held = await gate.waitFor('the gate grant', (l) => l.event === 'granted' || l.event === 'error', timeoutMs, g0);
    if (held.event !== 'granted') throw new Error(`the gate could not take ${this.fifoLock}: ${JSON.stringify(held)}`);
    const waiting: { w: WorkerProcess; from: number; position: number }[] = [];
    for (const w of this.queuers) {
      const from = w.lines.length;
      w.send({ cmd: 'queue' });
      const first = await w.waitFor('queued', (l) => l.event === 'queued' || l.event === 'granted' || l.event === 'error', timeoutMs, from);
      waiting.push({ w, from, position: first.event === 'queued' ? Number(first.position) : 0 });
    }
    await whileQueued();
    const r0 = gate.lines.length;
    gate.send({ cmd: 'release' });
    await gate.waitFor('the gate release', (l) => l.event === 'released' || l.event === 'release-failed', timeoutMs, r0);
    const waiters: { worker: string; position: number; token: number | undefined }[] = [];
    for (const { w, from, position } of waiting) {
      const end = await w.waitFor('a grant', (l) => l.event === 'granted' || l.event === 'error', timeoutMs, from);
      await w.waitFor('the release', (l) => l.event === 'released' || l.event === 'release-failed' || l.event === 'error', timeoutMs, from);
      waiters.push({ worker: w.workerId, position, token: end.event === 'granted' ? Number(end.token) : undefined });
    }
    const round: FifoRound = { lock: this.fifoLock, gateToken: Number(held.token), waiters };
    this.rounds.push(round);
    return round;
  }

  /** Stops every worker and waits for each to report done (a worker that does not is hung). */
  async stopWorkers(timeoutMs = 90_000): Promise<string[]> {
    const hung: string[] = [];
    const from = this.workers.map((w) => w.lines.length);
    for (const w of this.workers) w.send({ cmd: 'stop' });
    await Promise.all(
      this.workers.map(async (w, i) => {
        try {
          await w.waitFor('done', (l) => l.event === 'done' || l.event === 'fatal', timeoutMs, from[i]);
        } catch {
          hung.push(w.workerId);
        }
        // Closing the client waits for the coordinator's answers; it has had its chance.
        const exited = await Promise.race([w.exited.then(() => true), elapse(this.o.requestTimeoutMs + 5000).then(() => false)]);
        if (!exited) w.signal('SIGKILL');
      }),
    );
    return hung;
  }

  check(allowedErrors: readonly string[] = []): HistoryReport {
    return checkHistory({
      events: this.events(),
      workers: this.workers.map((w) => w.workerId),
      resource: this.resource,
      counters: this.counters,
      fifoRounds: this.rounds,
      allowedErrors,
    });
  }

  /** The tails of every process, for a failure message. */
  diagnostics(): string {
    const parts: string[] = [];
    for (const c of this.coordinators) {
      const interesting = c.log.filter((l) => l.level >= 40 || l.msg === CLAIMED || l.msg === 'coordinator ready').slice(-15);
      parts.push(`== ${c.name} (pid ${c.pid}, ${c.alive ? 'alive' : 'dead'})`, ...interesting.map((l) => JSON.stringify(l)));
    }
    for (const w of this.workers) parts.push(`== ${w.workerId}`, w.tail(6));
    return parts.join('\n');
  }

  /**
   * Writes the whole run to a new temporary directory — every worker event, every coordinator
   * log line and the resource's write history, one JSON object per line — and returns its path.
   */
  dump(): string {
    const dir = mkdtempSync(join(tmpdir(), `lockq-faults-${this.o.name}-`));
    writeFileSync(join(dir, 'events.jsonl'), this.events().map((e) => JSON.stringify(e)).join('\n'));
    writeFileSync(join(dir, 'writes.jsonl'), this.resource.history.map((w) => JSON.stringify(w)).join('\n'));
    writeFileSync(join(dir, 'rounds.json'), JSON.stringify(this.rounds, null, 1));
    for (const c of this.coordinators) {
      writeFileSync(join(dir, `${c.name}.log.jsonl`), [...c.lines.map((l) => JSON.stringify(l)), ...c.noise].join('\n'));
    }
    for (const w of this.workers) if (w.noise.length > 0) writeFileSync(join(dir, `${w.workerId}.stderr`), w.noise.join('\n'));
    return dir;
  }

  /** Kills every process, removes what the prefix left on the broker, stops Redis and the resource. */
  async destroy(): Promise<void> {
    await this.#probe?.then((c) => c.close()).catch(() => undefined);
    for (const p of [...this.workers, ...this.coordinators]) p.signal('SIGKILL');
    await Promise.all([...this.workers, ...this.coordinators].map((p) => p.exited));
    try {
      await this.o.broker.cleanup(this.prefix, this.o.partitions);
    } catch (err) {
      console.warn(`could not remove what ${this.prefix} left on the broker: ${String(err)}`);
    }
    await this.redis.destroy();
    await this.resource.close();
  }
}
