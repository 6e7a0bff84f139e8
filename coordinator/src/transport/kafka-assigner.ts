import { Buffer } from 'node:buffer';
import type { AssignerProtocol as KafkaAssignerProtocol, PartitionAssigner } from 'kafkajs';

/**
 * What each member of the coordinators' group tells the group's leader when it joins (its
 * protocol metadata's user data): every member is one coordinator's consumer of one lockq
 * partition.
 */
export interface PartitionClaim {
  /** The group member (kafkajs's member id). */
  readonly memberId: string;
  /** The lockq partition (= Kafka partition of the request topic) this member consumes. */
  readonly partition: number;
  /** The transport (coordinator process) the member belongs to: the unit partitions are spread over. */
  readonly owner: string;
  /** Wall-clock ms since which this member has held its partition; null when it does not. */
  readonly heldSince: number | null;
  /** Wall-clock ms when the member started consuming: among newcomers, the first asks first. */
  readonly startedAt: number;
}

/**
 * Who gets which partition: at most one member per partition, only a member that consumes it.
 *
 * Sticky: a partition stays with the member that holds it (the latest `heldSince` when two
 * claim it: the other is a zombie that missed its own take-over) unless its coordinator holds
 * more than its share, ⌈partitions wanted ÷ coordinators⌉. The rest go to the coordinator with
 * the fewest so far; ties to the member that holds it, then to the one that started first, so
 * a second consumer of a partition is a standby, as on RabbitMQ. Pure: same members, same answer.
 */
export function assignPartitions(claims: readonly PartitionClaim[]): Map<string, number> {
  const byPartition = new Map<number, PartitionClaim[]>();
  for (const c of claims) {
    const list = byPartition.get(c.partition);
    if (list === undefined) byPartition.set(c.partition, [c]);
    else list.push(c);
  }
  const owners = new Set(claims.map((c) => c.owner));
  const share = Math.ceil(byPartition.size / Math.max(1, owners.size));
  const count = new Map<string, number>();
  const counted = (owner: string) => count.get(owner) ?? 0;
  const out = new Map<string, number>();
  const give = (c: PartitionClaim) => {
    out.set(c.memberId, c.partition);
    count.set(c.owner, counted(c.owner) + 1);
  };
  const partitions = [...byPartition.keys()].sort((a, b) => a - b);
  const holder = (p: number) => {
    let best: PartitionClaim | undefined;
    for (const c of byPartition.get(p) ?? []) {
      if (c.heldSince === null) continue;
      if (best === undefined || (best.heldSince as number) < c.heldSince || (best.heldSince === c.heldSince && best.memberId > c.memberId)) best = c;
    }
    return best;
  };
  const rest: number[] = [];
  for (const p of partitions) {
    const h = holder(p);
    if (h !== undefined && counted(h.owner) < share) give(h);
    else rest.push(p);
  }
  for (const p of rest) {
    const h = holder(p);
    const rank = (c: PartitionClaim) => [counted(c.owner), c === h ? 0 : 1, c.startedAt] as const;
    let best: PartitionClaim | undefined;
    for (const c of byPartition.get(p) ?? []) {
      if (best === undefined) {
        best = c;
        continue;
      }
      const [a, b] = [rank(c), rank(best)];
      const cmp = a[0] - b[0] || a[1] - b[1] || a[2] - b[2] || (c.memberId < best.memberId ? -1 : 1);
      if (cmp < 0) best = c;
    }
    if (best !== undefined) give(best);
  }
  return out;
}

/** The user data a member sends: its claim without the member id, which the broker assigns. */
export type ClaimData = Omit<PartitionClaim, 'memberId'>;

function decodeClaim(memberId: string, userData: Buffer | undefined): PartitionClaim | null {
  try {
    const d = JSON.parse((userData ?? Buffer.alloc(0)).toString('utf8')) as Partial<ClaimData> & { v?: unknown };
    if (d.v !== 1 || !Number.isSafeInteger(d.partition) || typeof d.owner !== 'string' || typeof d.startedAt !== 'number') return null;
    const heldSince = typeof d.heldSince === 'number' ? d.heldSince : null;
    return { memberId, partition: d.partition as number, owner: d.owner, heldSince, startedAt: d.startedAt };
  } catch {
    return null;
  }
}

/**
 * The kafkajs assigner of the coordinators' group, named `LockqPartitions`: each member sends
 * `claim()` (read at every join, so it says what the member holds then), and the leader assigns
 * with {@link assignPartitions}. A member whose data it cannot read (another client in the
 * group) gets nothing.
 */
export function lockqPartitionAssigner(topic: string, claim: () => ClaimData, protocol: typeof KafkaAssignerProtocol): PartitionAssigner {
  const name = 'LockqPartitions';
  const version = 1;
  return () => ({
    name,
    version,
    async assign({ members }) {
      const claims = members.flatMap((m) => {
        const c = decodeClaim(m.memberId, protocol.MemberMetadata.decode(m.memberMetadata)?.userData);
        return c === null ? [] : [c];
      });
      const given = assignPartitions(claims);
      return members.map(({ memberId }) => {
        const p = given.get(memberId);
        const assignment = p === undefined ? {} : { [topic]: [p] };
        return { memberId, memberAssignment: protocol.MemberAssignment.encode({ version, assignment, userData: Buffer.alloc(0) }) };
      });
    },
    protocol({ topics }) {
      const userData = Buffer.from(JSON.stringify({ v: 1, ...claim() }), 'utf8');
      return { name, metadata: protocol.MemberMetadata.encode({ version, topics, userData }) };
    },
  });
}
