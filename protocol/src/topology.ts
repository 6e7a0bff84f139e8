/**
 * Names of every destination lockq uses on a broker, and how a lock name maps to a partition.
 * Both sides take names only from here, so a worker and a coordinator always agree.
 */
export const TOPOLOGY_PREFIX = 'lockq';

/** The queue, stream or topic that partition `p` consumes requests from. */
export function requestDestination(partition: number, prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.requests.${partition}`;
}

/** Where poison requests go. */
export function deadLetterDestination(prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.dead-letter`;
}

/** A worker's own reply destination; `instance` keeps two clients with one worker id apart. */
export function replyDestination(workerId: string, instance: string, prefix: string = TOPOLOGY_PREFIX): string {
  return `${prefix}.replies.${workerId}.${instance}`;
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
