/**
 * What a lockq record looks like on Kafka beyond its value (the message bytes): its key, its
 * reply partition and its headers, as both sides and raw clients compute them (docs/protocol.md
 * §17).
 */
import { Buffer } from 'node:buffer';
import { TOPOLOGY_PREFIX } from '../topology.js';

/** Header of a forwarded grant (a worker wrote it to another worker's address), value {@link FORWARD_ORIGIN}. */
export const ORIGIN_HEADER = 'lockq-origin';
/** {@link ORIGIN_HEADER}'s value on a forward. A coordinator's reply carries no such header. */
export const FORWARD_ORIGIN = 'forward';
/** Headers of a dead letter: why it was parked, from which partition, and its length before it was cut. */
export const DEAD_LETTER_HEADERS = Object.freeze({
  code: 'lockq-code',
  partition: 'lockq-partition',
  originalBytes: 'lockq-original-bytes',
} as const);

/** The consumer group every coordinator of a deployment joins on the request topic. */
export function coordinatorGroup(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.coordinators`;
}

/**
 * The transactional id of the producer that writes partition `partition`'s replies and commits
 * its consumed offsets. One per partition, the same in every coordinator, so a new owner's
 * producer fences the old owner's (Kafka bumps the id's epoch).
 */
export function coordinatorTransactionalId(partition: number, prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.coordinator.${partition}`;
}

/**
 * The partition of the reply topic that reply address `address` lives in: FNV-1a (32 bit) of the
 * address's UTF-8 bytes, modulo `partitions` (the reply topic's partition count, which readers
 * and writers take from the topic itself). Stable across processes and languages.
 */
export function replyPartitionOf(address: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(address, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}

/**
 * The key of a request record: its lock name, or its session id for the ops without one
 * (`open`, `heartbeat`, `close`); null when the body is not a request object (the coordinator
 * answers or parks it whatever its key). The partition is chosen by lockq, not from the key: the
 * key is for operators and tools reading the topic.
 */
export function requestKey(body: Uint8Array): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) return null;
  const { lock, session } = parsed as { lock?: unknown; session?: unknown };
  if (typeof lock === 'string') return lock;
  return typeof session === 'string' ? session : null;
}
