import { PROTOCOL_VERSION } from '@lockq/protocol';

/**
 * What the client knows of its session on one partition. Plain data, shared by the session table
 * (which opens it and keeps it alive) and the request table (which numbers its requests).
 */
export interface PartitionSession {
  readonly partition: number;
  readonly id: string;
  /** The JSON of every request's envelope up to its id, which is all that varies. */
  readonly envelope: string;
  opened: Promise<void> | undefined;
  /** `opened` once it has settled successfully: a request then goes out without awaiting it. */
  ready: Promise<void> | undefined;
  /**
   * Until when the coordinator provably keeps this session: the first send of the latest request
   * it answered (processing it refreshed the session), plus the session ttl, minus the drift
   * margin. Every lease of the session is trusted no longer than this.
   */
  aliveUntil: number;
  lastSentAt: number;
  /** Highest coordinator epoch seen; replies from lower epochs are ignored. */
  epoch: number;
  /**
   * The session key from the latest `opened` reply (docs/security.md §6.2): a forwarded grant is
   * believed only with a `mac` it verifies. Undefined until opened, or when the coordinator sent
   * none; then no forward is believed and grants come from the coordinator alone.
   */
  key: Uint8Array | undefined;
  /** The watermark: sequence numbers sent on this session whose answer is still needed, in order. */
  readonly unsettled: number[];
  unsettledHead: number;
  readonly settledEarly: Set<number>;
  lastSeq: number;
}

/** A session not yet opened; its id is stable for the client's life, so a re-open resumes it. */
export function newSession(partition: number, who: { workerId: string; instance: string; replyAddress: string }): PartitionSession {
  const id = `${who.workerId}.${who.instance}.${partition}`;
  return {
    partition,
    id,
    envelope:
      `{"v":${PROTOCOL_VERSION},"worker":${JSON.stringify(who.workerId)},"session":${JSON.stringify(id)},` +
      `"replyTo":${JSON.stringify(who.replyAddress)},"id":"`,
    opened: undefined,
    ready: undefined,
    aliveUntil: Number.NEGATIVE_INFINITY,
    lastSentAt: 0,
    epoch: 0,
    key: undefined,
    unsettled: [],
    unsettledHead: 0,
    settledEarly: new Set(),
    lastSeq: 0,
  };
}

/** Notes that request `seq` of the session goes out now, and returns the watermark it carries. */
export function numberRequest(s: PartitionSession, seq: number): number {
  // Everything sent on the session up to the first request whose answer is still needed.
  const first = s.unsettled[s.unsettledHead];
  const settled = first === undefined ? s.lastSeq : first - 1;
  s.unsettled.push(seq);
  s.lastSeq = seq;
  return settled;
}

/** The answer to request `seq` is no longer needed from the coordinator's memory. */
export function settle(s: PartitionSession, seq: number): void {
  // Answers mostly come in send order: then the oldest is settled without going through the Set.
  if (s.unsettled[s.unsettledHead] === seq) s.unsettledHead++;
  else s.settledEarly.add(seq);
  while (
    s.settledEarly.size > 0 &&
    s.unsettledHead < s.unsettled.length &&
    s.settledEarly.delete(s.unsettled[s.unsettledHead] as number)
  ) {
    s.unsettledHead++;
  }
  if (s.unsettledHead > 1024 && s.unsettledHead * 2 > s.unsettled.length) {
    s.unsettled.splice(0, s.unsettledHead);
    s.unsettledHead = 0;
  }
}
