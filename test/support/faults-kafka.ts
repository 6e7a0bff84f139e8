import kafkajs from 'kafkajs';
import { KAFKA_BROKERS } from './brokers.js';
import type { FaultBroker, FaultRig } from './faults-rig.js';
import { CLAIMED, type CoordinatorProcess, type LogLine, type WorkerEvent } from './faults-processes.js';

/** The Kafka the fault tests use, as a `kafka://` URL. */
export const KAFKA_URL = `kafka://${KAFKA_BROKERS}`;

/** A durable store a Kafka fault test runs with: the rig's own redis-server, or `--store kafka:`. */
export type KafkaFaultStore = 'redis' | 'kafka';

/**
 * The stores each Kafka fault test runs with, in turn: `LOCKQ_KAFKA_FAULT_STORES`, comma-separated
 * (`redis`, `kafka`). @defaultValue both
 */
export function kafkaFaultStores(): KafkaFaultStore[] {
  const text = process.env.LOCKQ_KAFKA_FAULT_STORES ?? 'redis,kafka';
  const stores = text.split(',').map((s) => s.trim());
  for (const s of stores) {
    if (s !== 'redis' && s !== 'kafka') throw new Error(`LOCKQ_KAFKA_FAULT_STORES: expected redis and/or kafka, got ${JSON.stringify(text)}`);
  }
  return stores as KafkaFaultStore[];
}

/** The rig's `store` option for `store`: undefined leaves the rig's redis-server. */
export function storeOption(store: KafkaFaultStore): { store?: string } {
  return store === 'kafka' ? { store: 'kafka:' } : {};
}

/**
 * The increment workers' lease in the Kafka rigs (auto-renewed). Longer than RabbitMQ's 3 s: a
 * reply on Kafka is a transaction (AddPartitionsToTxn, produce, offsets, EndTxn), and on the
 * shared 2-core machine under load a renewal's answer has been seen to take 2-3 s right after
 * partitions move; a lease lost to that is not what these tests are about.
 */
export const KAFKA_LOAD_TTL_MS = 10_000;

/**
 * How long a Kafka fault test waits for the load to make progress after a fault. Generous: with
 * a 3 s session, a starved 2-core machine (other suites or benchmarks beside it) has members
 * miss heartbeats and partitions move back and forth for a while; the load slows but must go on.
 */
export const PROGRESS_MS = 60_000;

/** What the Kafka server transport logs (with the partition) when the group gave the partition to another coordinator (or its consumer crashed). */
export const KAFKA_LOST = 'lost the partition';
/** … when a batch's transaction was refused because a newer owner's producer fenced this one. */
export const KAFKA_FENCED = 'fenced: another coordinator has taken this partition over; standing by';

/** Group timings of the coordinators in a Kafka fault rig. */
export interface KafkaGroupTimings {
  /**
   * The coordinators' group session timeout: how long the broker waits for a silent (killed,
   * paused) coordinator before its partitions move. The test broker accepts 1 s and up.
   */
  readonly sessionTimeoutMs: number;
  /** @defaultValue 1000 (the transport's default), or a third of the session when that is shorter */
  readonly heartbeatIntervalMs?: number;
}

/**
 * Kafka for a {@link FaultRig}: coordinators on `kafka://…` with the given session timeout and
 * `--identity off` (Kafka vouches for nobody, so the CLI refuses to run without saying so);
 * workers on the same broker with the SDK's defaults. Cleanup deletes the prefix's topics and
 * consumer groups (the coordinators' and every worker's reply group).
 */
export function kafkaFaultBroker(timings: KafkaGroupTimings): FaultBroker {
  const heartbeat = timings.heartbeatIntervalMs ?? Math.min(1000, Math.floor(timings.sessionTimeoutMs / 3));
  return {
    coordinatorFlags: () => [
      '--transport', `${KAFKA_URL}?sessionTimeoutMs=${timings.sessionTimeoutMs}&heartbeatIntervalMs=${heartbeat}`,
      '--identity', 'off',
    ],
    workerUrl: KAFKA_URL,
    cleanup: (prefix) => deleteKafkaPrefix(prefix),
  };
}

/** Deletes every topic and consumer group whose name starts with `<prefix>.`. */
export async function deleteKafkaPrefix(prefix: string): Promise<void> {
  const kafka = new kafkajs.Kafka({ brokers: KAFKA_BROKERS.split(','), clientId: 'lockq-faults', logLevel: kafkajs.logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`));
    if (topics.length > 0) await admin.deleteTopics({ topics });
    const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`${prefix}.`));
    // A group whose members are still leaving is not empty yet; the broker drops it with its offsets later.
    if (groups.length > 0) await admin.deleteGroups(groups).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/**
 * The Kafka transport's claims of a partition at or after `since`: the group gave it the
 * partition (now, or again after its producer was fenced) and a fresh transactional producer has
 * fenced the previous owner's. (The runner's claim, with an epoch, is `CoordinatorProcess.claims`.)
 */
export function transportClaims(c: CoordinatorProcess, since = 0): LogLine[] {
  return c.logged(CLAIMED, since).filter((l) => l.component === 'kafka-server-transport');
}

/** The base URL of a coordinator process's admin listener (from its ready line). */
export function adminUrl(c: CoordinatorProcess): string {
  const ready = c.log.find((l) => l.msg === 'coordinator ready');
  if (ready === undefined || typeof ready.admin !== 'string') throw new Error(`${c.name} is not ready`);
  return ready.admin;
}

/**
 * The partitions `c` is deciding now, as its admin listener says (`/v1/locks`: the partitions it
 * has claimed and not let go since); empty for a process that does not answer.
 */
export async function activePartitions(c: CoordinatorProcess): Promise<number[]> {
  if (!c.alive) return [];
  try {
    const res = await fetch(`${adminUrl(c)}/v1/locks`);
    const body = (await res.json()) as { partitions?: Record<string, unknown> };
    return Object.keys(body.partitions ?? {})
      .map(Number)
      .sort((a, b) => a - b);
  } catch {
    return [];
  }
}

/** Each live coordinator's active partitions, as its admin listener says. */
export async function activeByCoordinator(rig: FaultRig): Promise<Map<CoordinatorProcess, number[]>> {
  const live = rig.live;
  const held = await Promise.all(live.map((c) => activePartitions(c)));
  return new Map(live.map((c, i) => [c, held[i] as number[]]));
}

/**
 * Whether the live coordinators' admin listeners agree with their logs: every partition is
 * active at exactly one live coordinator, the one that claimed it last. Returns what is wrong
 * (empty when all is well).
 */
export async function ownershipProblems(rig: FaultRig): Promise<string[]> {
  const active = await activeByCoordinator(rig);
  const owners = rig.owners();
  const problems: string[] = [];
  for (let p = 0; p < rig.o.partitions; p++) {
    const at = [...active].filter(([, ps]) => ps.includes(p)).map(([c]) => c.name);
    const owner = owners.get(p);
    if (at.length !== 1) problems.push(`partition ${p} is active at ${at.length === 0 ? 'no coordinator' : at.join(' and ')}`);
    else if (owner?.name !== at[0]) problems.push(`partition ${p} is active at ${at[0]} but ${owner?.name ?? 'nobody'} claimed it last`);
  }
  return problems;
}

/** One partition's move: who claimed it after the fault, and when its first grant of the new term came. */
export interface PartitionMove {
  readonly partition: number;
  readonly to: CoordinatorProcess;
  readonly epoch: number;
  /** The highest token the partition may have issued before the claim: every token of the new term is above it. */
  readonly fromToken: number;
  /** From the fault to the new owner's claim (epoch bumped, state restored). */
  readonly claimMs: number;
  /** From the fault to the first grant a worker got on the partition in the new term. */
  readonly grantMs: number;
}

/**
 * For each of `partitions`: the first claim at or after `since` by a live coordinator other
 * than `exclude`, and the first grant a worker got on a lock of that partition with a token
 * above the claim's starting point (so decided in the new term). Undefined until every
 * partition has both.
 */
export function partitionMoves(rig: FaultRig, since: number, partitions: readonly number[], exclude?: CoordinatorProcess): PartitionMove[] | undefined {
  const claims = new Map<number, { c: CoordinatorProcess; line: LogLine }>();
  for (const c of rig.live) {
    if (c === exclude) continue;
    for (const line of c.claims(since)) {
      if (line.partition === undefined || !partitions.includes(line.partition)) continue;
      const seen = claims.get(line.partition);
      if (seen === undefined || line.time < seen.line.time) claims.set(line.partition, { c, line });
    }
  }
  if (claims.size < partitions.length) return undefined;
  const firstGrant = new Map<number, WorkerEvent>();
  for (const e of rig.events()) {
    if (e.event !== 'granted' || e.at < since || e.lock === undefined) continue;
    const p = rig.partitionOf(e.lock);
    const claim = claims.get(p);
    if (claim === undefined || (e.token ?? 0) <= (claim.line.lastToken ?? Number.POSITIVE_INFINITY)) continue;
    const seen = firstGrant.get(p);
    if (seen === undefined || e.at < seen.at) firstGrant.set(p, e);
  }
  if (firstGrant.size < partitions.length) return undefined;
  return partitions.map((p) => {
    const { c, line } = claims.get(p) as { c: CoordinatorProcess; line: LogLine };
    return { partition: p, to: c, epoch: line.epoch ?? -1, fromToken: line.lastToken ?? Number.POSITIVE_INFINITY, claimMs: line.time - since, grantMs: (firstGrant.get(p) as WorkerEvent).at - since };
  });
}
