import { it } from 'vitest';
import { DEFAULT_CORE_LIMITS, type Decision, LockCore } from '../src/core/index.js';
it('dbg', () => {
  const c = new LockCore({ partition: 0, partitions: 1, epoch: 1, tokenFloor: 0, tokenBlockSize: 1, limits: DEFAULT_CORE_LIMITS });
  const out: Decision[] = [];
  const b = (n: number, id: string) => ({ v: 1 as const, id, worker: `w${n}`, session: `s${n}`, replyTo: `q.s${n}` });
  c.handle({ ...b(0, '1'), op: 'open', sessionTtlMs: 800, partitions: 1 }, 0, out);
  c.handle({ ...b(1, '2'), op: 'open', sessionTtlMs: 800, partitions: 1 }, 0, out);
  c.handle({ ...b(2, '3'), op: 'open', sessionTtlMs: 800, partitions: 1 }, 0, out);
  c.handle({ ...b(0, '4'), op: 'heartbeat' }, 664, out);
  console.log(c.counts(), c.nextDeadline());
  c.handle({ ...b(1, '2'), op: 'open', sessionTtlMs: 800, partitions: 1 }, 800, out);
  console.log(c.counts(), c.nextDeadline());
  console.log(JSON.stringify(out.slice(4)));
});
