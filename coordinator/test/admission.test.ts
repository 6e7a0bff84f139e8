import { describe, expect, it } from 'vitest';
import { Admission, RATE_LIMITED_REPLY_GAP_MS } from '../src/runtime/admission.js';

describe('Admission: who sent a request, at what rate, and where it may be answered', () => {
  it('with identity required, only a principal the transport vouches for gets in', () => {
    const door = new Admission('required', 'lockq', null);
    expect(door.sender('billing', 0)).toEqual({ admit: true, principal: 'billing' });
    for (const vouched of [undefined, '', 'a.b', 'has space', 'x'.repeat(65), 'ünï']) {
      expect(door.sender(vouched, 0)).toEqual({ admit: false, forbidden: 'principal' });
    }
  });

  it('with identity off, everyone is the one anonymous principal and may be answered anywhere', () => {
    const door = new Admission('off', 'lockq', { perSecond: 1, burst: 1 });
    expect(door.sender(undefined, 0)).toEqual({ admit: true, principal: undefined });
    expect(door.sender('billing', 0)).toEqual({ admit: true, principal: undefined });
    // No rate either: there is no principal to count against.
    for (let i = 0; i < 10; i++) expect(door.sender('billing', 0).admit).toBe(true);
    expect(door.mayAnswer(undefined, 'anything.at.all')).toBe(true);
  });

  it("answers only inside the principal's own namespace, which never covers another principal's", () => {
    const door = new Admission('required', 'tenant-1', null);
    expect(door.mayAnswer('a', 'tenant-1.replies.a.worker.i')).toBe(true);
    expect(door.mayAnswer('a', 'tenant-1.replies.ab.worker.i')).toBe(false);
    expect(door.mayAnswer('ab', 'tenant-1.replies.a.b.i')).toBe(false);
    expect(door.mayAnswer('a', 'tenant-1.replies.a')).toBe(false);
    expect(door.mayAnswer('a', 'lockq.replies.a.worker.i')).toBe(false);
    expect(door.mayAnswer('b', 'tenant-1.replies.a.worker.i')).toBe(false);
    expect(door.mayAnswer(undefined, 'tenant-1.replies.a.worker.i')).toBe(false);
  });

  it('rates each principal by its own token bucket: the burst, then perSecond, with one RATE_LIMITED reply per gap', () => {
    const door = new Admission('required', 'lockq', { perSecond: 10, burst: 3 });
    const admitted = (p: string, now: number) => door.sender(p, now).admit;
    expect([0, 0, 0].map(() => admitted('flood', 0))).toEqual([true, true, true]);
    const first = door.sender('flood', 0);
    expect(first).toEqual({ admit: false, limited: true, reply: true, retryAfterMs: 100 });
    // Within the gap: dropped, not answered.
    expect(door.sender('flood', RATE_LIMITED_REPLY_GAP_MS - 1)).toMatchObject({ admit: false, reply: false });
    // Another principal is untouched.
    expect(admitted('quiet', 0)).toBe(true);
    // 100 ms later one token has come back (10 a second).
    expect(admitted('flood', RATE_LIMITED_REPLY_GAP_MS + 1)).toBe(true);
    expect(door.sender('flood', RATE_LIMITED_REPLY_GAP_MS + 1)).toMatchObject({ admit: false, reply: true });
    // A long pause refills the bucket only up to the burst.
    expect([0, 0, 0, 0].map(() => admitted('flood', 60_000))).toEqual([true, true, true, false]);
  });

  it('parks a bounded number of dead letters a second', () => {
    const door = new Admission('required', 'lockq', null);
    let parked = 0;
    for (let i = 0; i < 1000; i++) if (door.mayDeadLetter(0)) parked++;
    expect(parked).toBe(200);
    expect(door.mayDeadLetter(5)).toBe(false);
    expect(door.mayDeadLetter(1000)).toBe(true);
  });

  it('keeps a bounded number of buckets under a churn of principals', () => {
    const door = new Admission('required', 'lockq', { perSecond: 1000, burst: 1000 });
    // One request each, a millisecond apart: a bucket is full again a millisecond after its use.
    for (let i = 0; i < 50_000; i++) door.sender(`p${i}`, i);
    expect(door.ratedPrincipals).toBeLessThanOrEqual(10_000);
    expect(door.sender('p0', 60_000).admit).toBe(true);
  });
});
