import type { AcquireRequest, Request } from '@lockq/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type CoreSnapshot, DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';
import { type JournalEntry, StaleEpochError, type StateStore } from '../src/store/index.js';

/**
 * What every journaling {@link StateStore} must do. `open` gives a store over empty state each
 * time it is called; the suite closes it after each case.
 */
export function defineStoreContract(name: string, open: () => StateStore | Promise<StateStore>): void {
  describe(`StateStore contract: ${name}`, () => {
    let store: StateStore;
    beforeEach(async () => {
      store = await open();
    });
    afterEach(async () => {
      await store.close();
    });

    it('journals', () => {
      expect(store.journals).toBe(true);
    });

    it('the first claim gives epoch 1, ceiling 0, no snapshot and an empty journal', async () => {
      expect(await store.claim(0)).toEqual({ epoch: 1, tokenCeiling: 0, snapshot: null, journal: [] });
    });

    it('every claim bumps the epoch', async () => {
      for (let epoch = 1; epoch <= 5; epoch++) expect((await store.claim(0)).epoch).toBe(epoch);
    });

    it('entries appended in the current epoch come back from the next claim, oldest first', async () => {
      const { epoch } = await store.claim(0);
      const entries = [entry(1, 3), entry(2, 0), entry(3, 10)];
      for (const e of entries) await store.append(0, epoch, e);
      const next = await store.claim(0);
      expect(next.epoch).toBe(epoch + 1);
      expect(next.journal).toEqual(entries);
      // A later term appends after what it resumed from.
      await store.append(0, next.epoch, entry(4, 1));
      expect((await store.claim(0)).journal).toEqual([...entries, entry(4, 1)]);
    });

    it('a write with a stale epoch is refused and changes nothing', async () => {
      const first = await store.claim(0);
      await store.append(0, first.epoch, { ...entry(1, 2), tokenCeiling: 100 });
      const second = await store.claim(0);
      await expect(store.append(0, first.epoch, { ...entry(2, 2), tokenCeiling: 500 })).rejects.toBeInstanceOf(StaleEpochError);
      await expect(store.append(0, second.epoch + 1, entry(2, 2))).rejects.toBeInstanceOf(StaleEpochError);
      await expect(store.snapshot(0, first.epoch, snapshotOf(0, 7))).rejects.toBeInstanceOf(StaleEpochError);
      const third = await store.claim(0);
      expect(third).toEqual({ epoch: 3, tokenCeiling: 100, snapshot: null, journal: [{ ...entry(1, 2), tokenCeiling: 100 }] });
    });

    it('a partition never claimed refuses writes', async () => {
      await expect(store.append(7, 1, entry(1, 1))).rejects.toBeInstanceOf(StaleEpochError);
      await expect(store.snapshot(7, 1, snapshotOf(7, 1))).rejects.toBeInstanceOf(StaleEpochError);
      expect(await store.claim(7)).toEqual({ epoch: 1, tokenCeiling: 0, snapshot: null, journal: [] });
    });

    it('the token ceiling only goes up, and survives snapshots', async () => {
      const { epoch } = await store.claim(0);
      await store.append(0, epoch, { ...entry(1, 1), tokenCeiling: 20_000 });
      await store.append(0, epoch, { ...entry(2, 1), tokenCeiling: 10_000 });
      await store.append(0, epoch, entry(3, 1));
      const next = await store.claim(0);
      expect(next.tokenCeiling).toBe(20_000);
      await store.snapshot(0, next.epoch, snapshotOf(0, 3));
      expect((await store.claim(0)).tokenCeiling).toBe(20_000);
      // Large ceilings stay exact (no float formatting on the way through).
      const big = 2 ** 52 + 1;
      const last = await store.claim(0);
      await store.append(0, last.epoch, { ...entry(4, 0), tokenCeiling: big });
      expect((await store.claim(0)).tokenCeiling).toBe(big);
    });

    it('a snapshot replaces the journal', async () => {
      const { epoch } = await store.claim(0);
      await store.append(0, epoch, entry(1, 2));
      await store.append(0, epoch, entry(2, 2));
      const snap = snapshotOf(0, 4);
      await store.snapshot(0, epoch, snap);
      await store.append(0, epoch, entry(3, 2));
      const next = await store.claim(0);
      expect(next.snapshot).toEqual(snap);
      expect(next.journal).toEqual([entry(3, 2)]);
      // A later snapshot replaces the earlier one.
      const later = snapshotOf(0, 9);
      await store.snapshot(0, next.epoch, later);
      expect(await store.claim(0)).toMatchObject({ snapshot: later, journal: [] });
    });

    it('a snapshot with a stale epoch is refused', async () => {
      const first = await store.claim(0);
      await store.append(0, first.epoch, entry(1, 1));
      await store.claim(0);
      await expect(store.snapshot(0, first.epoch, snapshotOf(0, 2))).rejects.toBeInstanceOf(StaleEpochError);
      expect(await store.claim(0)).toMatchObject({ snapshot: null, journal: [entry(1, 1)] });
    });

    it('partitions are independent', async () => {
      const p0 = await store.claim(0);
      await store.claim(0);
      const p1 = await store.claim(1);
      expect(p1.epoch).toBe(1);
      await store.append(1, p1.epoch, { ...entry(1, 1), tokenCeiling: 50 });
      await store.snapshot(1, p1.epoch, snapshotOf(1, 1));
      await expect(store.append(0, p0.epoch, entry(1, 1))).rejects.toBeInstanceOf(StaleEpochError);
      expect(await store.claim(0)).toEqual({ epoch: 3, tokenCeiling: 0, snapshot: null, journal: [] });
      expect(await store.claim(1)).toEqual({ epoch: 2, tokenCeiling: 50, snapshot: snapshotOf(1, 1), journal: [] });
    });

    it('entries and snapshots round-trip exactly', async () => {
      const { epoch } = await store.claim(0);
      const odd: JournalEntry = {
        now: 1234.567_890_123,
        requests: [
          ...requests(0, 10),
          { v: 1, op: 'inspect', id: 'i-1', worker: 'w', session: 's', replyTo: 'lockq.replies.w.i' },
          { v: 1, op: 'acquire', id: 'ü-✓', worker: 'wörker "q"', session: 's\\n', replyTo: 'r', lock: '{order-7}:lines', kind: 'rwlock', mode: 'shared', limit: 1, permits: 1, ttlMs: 30_000, waitMs: 0 },
        ],
        tokenCeiling: 30_000,
      };
      const tick: JournalEntry = { now: 0.1, requests: [] };
      await store.append(0, epoch, odd);
      await store.append(0, epoch, tick);
      const claimed = await store.claim(0);
      expect(claimed.journal).toStrictEqual([odd, tick]);
      const snap = snapshotOf(0, 12);
      await store.snapshot(0, claimed.epoch, snap);
      expect((await store.claim(0)).snapshot).toStrictEqual(snap);
    });
  });
}

/** `count` realistic requests: opens, acquires of each kind, releases, extends, cancels. */
export function requests(seed: number, count: number): Request[] {
  const out: Request[] = [];
  for (let i = 0; i < count; i++) {
    const base = { v: 1, id: `r${seed}-${i}`, worker: `worker-${i % 3}`, session: `s-${i % 3}`, replyTo: `lockq.replies.worker-${i % 3}.ab12cd34` } as const;
    switch (i % 5) {
      case 0:
        out.push({ ...base, op: 'open', sessionTtlMs: 15_000, partitions: 1 });
        break;
      case 1:
        out.push({ ...base, op: 'acquire', lock: `job:${seed}:${i}`, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 30_000, waitMs: 30_000 });
        break;
      case 2:
        out.push({ ...base, op: 'acquire', lock: 'render', kind: 'semaphore', mode: 'shared', limit: 8, permits: 2, ttlMs: 10_000, waitMs: 5_000 });
        break;
      case 3:
        out.push({ ...base, op: 'release', lock: `job:${seed}:${i - 2}`, token: 10_000 + i });
        break;
      default:
        out.push({ ...base, op: 'extend', lock: 'render', token: 10_001 + i, ttlMs: 10_000 });
    }
  }
  return out;
}

function entry(now: number, count: number): JournalEntry {
  return { now: now + 0.25, requests: requests(now, count) };
}

/** A real core's snapshot after `grants` grants and a queue of waiters. */
export function snapshotOf(partition: number, grants: number): CoreSnapshot {
  const core = new LockCore({ partition, partitions: 8, epoch: 1, tokenFloor: 0, tokenBlockSize: 10_000, limits: DEFAULT_CORE_LIMITS });
  const out: Decision[] = [];
  const session = (w: string) => ({ v: 1, worker: w, session: `${w}-s`, replyTo: `lockq.replies.${w}.x` }) as const;
  for (const w of ['a', 'b', 'c']) core.handle({ ...session(w), op: 'open', id: `${w}-open`, sessionTtlMs: 15_000, partitions: 8 }, 1, out);
  for (let i = 0; i < grants; i++) {
    const w = ['a', 'b', 'c'][i % 3]!;
    const acquire: AcquireRequest = { ...session(w), op: 'acquire', id: `${w}-${i}`, lock: `lock-${i % 4}`, kind: 'mutex', mode: 'exclusive', limit: 1, permits: 1, ttlMs: 30_000, waitMs: 60_000 };
    core.handle(acquire, 2 + i, out);
  }
  return core.snapshot();
}

