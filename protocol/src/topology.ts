/**
 * Names of every destination lockq uses on a broker, and how a lock name maps to a partition.
 * Both sides take names only from here, so a worker and a coordinator always agree.
 */
export const TOPOLOGY_PREFIX = 'lockq';

/** The queue, stream or topic that partition `p` consumes requests from. */
export function requestDestination(partition: number, prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.requests.${partition}`;
}

/**
 * Where workers publish requests, with the partition number as routing key (RabbitMQ: a direct
 * exchange bound to every request queue). Workers never write to the default exchange, which
 * would let them write into any queue (docs/security.md §5.4).
 */
export function requestExchange(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.requests`;
}

/**
 * Where a holder publishes a forwarded grant, with the successor's reply address as routing key
 * (RabbitMQ: a direct exchange each reply queue binds under its own name).
 */
export function forwardExchange(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.forwards`;
}

/**
 * The one topic every request travels on where the broker has partitioned topics (Kafka): its
 * Kafka partition `p` is lockq partition `p`, so it has exactly as many partitions as the
 * deployment.
 */
export function requestTopic(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.requests`;
}

/**
 * The one topic every worker's replies and forwarded grants share where the broker has
 * partitioned topics (Kafka): a reply's key is its reply address, and each worker reads only the
 * partition its address hashes to, dropping records keyed for others.
 */
export function replyTopic(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.replies`;
}

/**
 * Where a coordinator keeps its partitions' state when the broker is also the store (Kafka,
 * `--store kafka:`): a compacted topic whose partition `p` is lockq partition `p`'s changelog
 * (its term record, latest snapshot and journal since).
 */
export function changelogTopic(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.changelog`;
}

/** Where poison requests go. */
export function deadLetterDestination(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.dead-letter`;
}

/**
 * The start of every reply address of `principal`: a coordinator that checks identity answers
 * only to addresses under it (docs/security.md §5.3). Principals have no `.`, so one principal's
 * namespace is never a prefix of another's.
 */
export function replyNamespace(principal: string, prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.replies.${principal}.`;
}

/**
 * A worker's own reply destination, inside its principal's namespace; `instance` keeps two
 * clients with one worker id apart.
 */
export function replyDestination(principal: string, workerId: string, instance: string, prefix: string = TOPOLOGY_PREFIX): string {
  return `${replyNamespace(principal, prefix)}${workerId}.${instance}`;
}

/**
 * The partition that owns `lockName`: FNV-1a of the name, or of the text inside its first
 * non-empty `{...}` so that `{order-7}:lines` and `{order-7}:total` share a partition.
 */
export function partitionOf(lockName: string, partitions: number): number {
  if (partitions <= 1) return 0;
  let key = lockName;
  const open = lockName.indexOf('{');
  if (open >= 0) {
    const close = lockName.indexOf('}', open + 1);
    if (close > open + 1) key = lockName.slice(open + 1, close);
  }
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    hash ^= key.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % partitions;
}
