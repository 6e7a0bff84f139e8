/**
 * The coordinator's keys of docs/security.md §6: session keys, hand-off proofs bound to the
 * successor's principal and session, and the MAC on a successor's grant; then the runtime that
 * puts them on the wire (an `opened` reply's `key`, a successor event grant's `proof` and `mac`),
 * driven with raw requests on the memory broker.
 */
import { Buffer } from 'node:buffer';
import { Coordinator, MemoryServerTransport } from '@lockq/coordinator';
import {
  decodeReply,
  encode,
  type GrantedReply,
  grantMac,
  isHmac16,
  MemoryBroker,
  type OpenedReply,
  type Reply,
  type Request,
  type SuccessorEvent,
  verifyGrantMac,
} from '@lockq/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait-for.js';
import { HandOffProofs } from '../src/runtime/hand-off-proof.js';

const SECRET = 'a deployment secret of 32 bytes!';

describe('session keys', () => {
  const keys = new HandOffProofs(SECRET);

  it('are 16 bytes, the same under the same secret, and differ with partition, principal, session and secret', () => {
    const key = keys.sessionKey(3, 'alice', 'w.i.3');
    expect(key).toHaveLength(16);
    expect(isHmac16(key.toString('base64url'))).toBe(true);
    expect(new HandOffProofs(SECRET).sessionKey(3, 'alice', 'w.i.3')).toEqual(key);
    const others = [
      keys.sessionKey(4, 'alice', 'w.i.3'),
      keys.sessionKey(3, 'bob', 'w.i.3'),
      keys.sessionKey(3, '', 'w.i.3'),
      keys.sessionKey(3, 'alice', 'w.i.4'),
      new HandOffProofs(`${SECRET}?`).sessionKey(3, 'alice', 'w.i.3'),
      new HandOffProofs(undefined).sessionKey(3, 'alice', 'w.i.3'),
    ];
    for (const other of others) expect(other.equals(key)).toBe(false);
  });

  it('are not hand-off proofs: the labels keep the two apart', () => {
    expect(keys.sessionKey(0, '', 's').toString('base64url')).not.toBe(keys.proof(0, '', 0, '', 's'));
  });
});

describe('hand-off proofs', () => {
  const keys = new HandOffProofs(SECRET);
  const release = (principal: string | undefined, handoff: string): Request => ({
    v: 1,
    op: 'release',
    id: 'r1',
    worker: 'w',
    session: 'w.i.0',
    replyTo: 'q',
    lock: 'hot',
    token: 7,
    handoff,
    ...(principal === undefined ? {} : { principal }),
  });

  it('hold only for the principal and session they were made for', () => {
    const proof = keys.proof(0, 'hot', 7, 'alice', 'w.i.0');
    expect(keys.check(0, release('alice', proof))).toMatchObject({ handoff: true });
    for (const principal of ['bob', '', undefined]) expect(keys.check(0, release(principal, proof))).not.toHaveProperty('handoff');
    // Identity off: the principal is "" on both sides.
    expect(keys.check(0, release(undefined, keys.proof(0, 'hot', 7, '', 'w.i.0')))).toMatchObject({ handoff: true });
  });
});

describe('grant MACs', () => {
  const key = new HandOffProofs(SECRET).sessionKey(0, 'alice', 'w.i.0');
  const fields = { type: 'granted', re: 'a-1', lock: 'hot', token: 8, ttlMs: 10_000, basis: 'a-0', proof: 'P'.repeat(22) } as const;
  const grant: GrantedReply = { v: 1, epoch: 5, partition: 0, ...fields, mac: grantMac(key, 0, 5, fields) };

  it('verify for exactly the grant, envelope and key they were made for', () => {
    expect(isHmac16(grant.mac)).toBe(true);
    expect(verifyGrantMac(key, grant)).toBe(true);
    const changed: GrantedReply[] = [
      { ...grant, epoch: 6 },
      { ...grant, partition: 1 },
      { ...grant, re: 'a-2' },
      { ...grant, lock: 'cold' },
      { ...grant, token: 9 },
      { ...grant, ttlMs: 20_000 },
      { ...grant, basis: 'a-1' }, // a later basis would be a longer lease
      { ...grant, proof: 'Q'.repeat(22) }, // a spoilt proof would get the early requests refused
      { ...grant, token: '8' as unknown as number }, // the same text, another type
    ];
    for (const g of changed) expect(verifyGrantMac(key, g), JSON.stringify(g)).toBe(false);
    const { proof: _, ...unproven } = grant;
    expect(verifyGrantMac(key, unproven)).toBe(false);
    expect(verifyGrantMac(new HandOffProofs(SECRET).sessionKey(0, 'bob', 'w.i.0'), grant)).toBe(false);
  });

  it('are refused when missing or malformed', () => {
    const { mac: _, ...unsealed } = grant;
    expect(verifyGrantMac(key, unsealed)).toBe(false);
    for (const mac of ['', 'A'.repeat(21), 'A'.repeat(23), `${'A'.repeat(21)}=`, `${'A'.repeat(21)}+`]) {
      expect(verifyGrantMac(key, { ...grant, mac })).toBe(false);
    }
  });
});

describe('the runtime puts the keys on the wire', () => {
  let coordinator: Coordinator | undefined;
  afterEach(async () => {
    await coordinator?.stop();
    coordinator = undefined;
  });

  /** A coordinator on a fresh memory broker, and raw senders for two sessions of `principal`. */
  async function start(identity: 'off' | 'required', principal: string | undefined) {
    const broker = new MemoryBroker();
    coordinator = await Coordinator.start({ transport: new MemoryServerTransport(broker), handOffSecret: SECRET, identity });
    const replies = new Map<string, Reply[]>();
    const session = (worker: string) => {
      const replyTo = `lockq.replies.${principal ?? 'local'}.${worker}.i`;
      const got: Reply[] = [];
      replies.set(worker, got);
      broker.subscribeReplies(replyTo, (body) => got.push(decodeReply(body) as Reply));
      let n = 0;
      const send = (fields: Record<string, unknown>): string => {
        const id = `${worker}-${++n}`;
        const request = { v: 1, id, worker, session: `${worker}.i.0`, replyTo, ...fields } as unknown as Request;
        (broker.publishRequest as (p: number, b: Uint8Array, principal?: string) => void)(0, encode(request), principal);
        return id;
      };
      const answer = async (id: string) => {
        await waitFor(() => got.some((r) => r.re === id), `an answer to ${id}`);
        return got.find((r) => r.re === id) as Reply;
      };
      return { id: `${worker}.i.0`, got, send, answer };
    };
    return { holder: session('h'), waiter: session('w') };
  }

  const open = { op: 'open', sessionTtlMs: 30_000, partitions: 1 };

  for (const [identity, principal] of [
    ['off', undefined],
    ['required', 'alice'],
  ] as const) {
    it(`identity ${identity}: opened carries the session's key (on a resume and a repeat too); the successor's grant its proof and a MAC under the successor's key`, async () => {
      const { holder, waiter } = await start(identity, principal);
      const keys = new HandOffProofs(SECRET);
      const bound = identity === 'off' ? '' : (principal as string);
      const keyOf = (session: string) => keys.sessionKey(0, bound, session);

      const first = holder.send(open);
      const opened = (await holder.answer(first)) as OpenedReply;
      expect(opened).toMatchObject({ type: 'opened', resumed: false, key: keyOf(holder.id).toString('base64url') });
      const again = (await holder.answer(holder.send(open))) as OpenedReply;
      expect(again).toMatchObject({ resumed: true, key: opened.key });
      // A re-sent open (same id) is answered from memory, key and all.
      holder.send({ ...open, id: first });
      await waitFor(() => holder.got.filter((r) => r.re === first).length === 2, 'the repeated open answered');
      expect(holder.got.filter((r) => r.re === first)[1]).toEqual(opened);

      const wOpened = (await waiter.answer(waiter.send(open))) as OpenedReply;
      expect(Buffer.from(wOpened.key as string, 'base64url')).toEqual(keyOf(waiter.id));

      const held = (await holder.answer(holder.send({ op: 'acquire', lock: 'hot', ttlMs: 30_000, waitMs: 0 }))) as GrantedReply;
      const queued = waiter.send({ op: 'acquire', lock: 'hot', ttlMs: 30_000, waitMs: 10_000 });
      await waitFor(() => holder.got.some((r) => r.type === 'successor'), 'the successor event');
      const event = holder.got.find((r) => r.type === 'successor') as SuccessorEvent;
      const grant = event.next?.grant as GrantedReply;
      expect(grant).toMatchObject({ re: queued, lock: 'hot', token: held.token + 1 });
      expect(grant.proof).toBe(keys.proof(0, 'hot', grant.token, bound, waiter.id));
      // What the holder forwards: the grant in the event's envelope, which the successor checks with its key.
      const forwarded = decodeReply(encode({ ...grant, v: 1, epoch: event.epoch, partition: event.partition })) as GrantedReply;
      expect(verifyGrantMac(Buffer.from(wOpened.key as string, 'base64url'), forwarded)).toBe(true);
      expect(verifyGrantMac(Buffer.from(opened.key as string, 'base64url'), forwarded)).toBe(false); // not the holder's key
      // The coordinator's own grants carry neither.
      expect(held).not.toHaveProperty('mac');
      expect(held).not.toHaveProperty('proof');
    });
  }
});
