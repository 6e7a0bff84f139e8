import type { AcquireRequest, LockKind, LockMode } from '@lockq/protocol';
import { DeadlineHeap } from './deadline-heap.js';
import { addUse, removeUse } from './lock-users.js';
import {
  createHold,
  createLock,
  createPrincipal,
  createSession,
  createWaiter,
  type Expiring,
  type Hold,
  type LockState,
  type Memo,
  type Principal,
  type Session,
  type SessionInit,
  type Waiter,
} from './entities.js';

/** What is due at one instant, as the schedule held it. */
export interface Due {
  readonly sessions: Session[];
  readonly holds: Hold[];
  readonly waiters: Waiter[];
}

/**
 * The live sessions, locks, holds and waiters of one partition, and their deadlines. The only
 * place pieces are attached and detached (live decisions and restore alike), so the links between
 * them, the counts and the schedule always agree. It decides nothing: `LockCore` does.
 */
export class PartitionState {
  /** Principals with a session here, each holding its sessions; in the order they came. */
  readonly principals = new Map<string, Principal>();
  readonly locks = new Map<string, LockState>();
  /** Idle lock entries kept for reuse. */
  readonly #idleLocks: LockState[] = [];
  readonly #heap = new DeadlineHeap<Expiring>();
  /**
   * Every live session by id, over all principals: the first of each id, the others (of other
   * principals) chained behind it by `sameId`. Ids rarely repeat across principals, so finding a
   * request's session costs one lookup, as before sessions had principals; and a session of
   * another principal's (`FORBIDDEN`) is told from none at all (`NO_SESSION`) by the same lookup.
   */
  readonly #byId = new Map<string, Session>();
  #sessionCount = 0;
  #holdCount = 0;
  #waiterCount = 0;

  get sessionCount(): number {
    return this.#sessionCount;
  }

  get holdCount(): number {
    return this.#holdCount;
  }

  get waiterCount(): number {
    return this.#waiterCount;
  }

  /** The record of principal `name`, if it has a session here. */
  principal(name: string): Principal | undefined {
    return this.principals.get(name);
  }

  /** The session `id` of principal `name`. */
  session(name: string, id: string): Session | undefined {
    for (let s = this.#byId.get(id); s !== undefined; s = s.sameId) if (s.principal.name === name) return s;
    return undefined;
  }

  /** Whether any principal has a session `id`. */
  hasSessionId(id: string): boolean {
    return this.#byId.has(id);
  }

  /** Every live session: principal by principal, each's in the order they were opened. */
  *sessions(): IterableIterator<Session> {
    for (const p of this.principals.values()) yield* p.sessions.values();
  }

  /** A new session, registered under its principal and scheduled to expire at its deadline. */
  addSession(init: SessionInit): Session {
    let principal = this.principal(init.principal);
    if (principal === undefined) {
      principal = createPrincipal(init.principal);
      this.principals.set(principal.name, principal);
    }
    const session = createSession(init, principal);
    session.live = true;
    principal.sessions.set(session.id, session);
    const first = this.#byId.get(session.id);
    if (first === undefined) {
      this.#byId.set(session.id, session);
    } else {
      let last = first;
      while (last.sameId !== undefined) last = last.sameId;
      last.sameId = session;
    }
    this.#sessionCount++;
    this.schedule(session.deadline, session);
    return session;
  }

  /**
   * Unregisters a session; its holds and waits are the caller's to remove next. Its principal's
   * record goes with its last session (its counts then drop to zero as those are removed), so
   * the principals are listed in the same order however the state was built (see snapshot.ts).
   */
  removeSession(session: Session): void {
    session.live = false;
    const principal = session.principal;
    principal.sessions.delete(session.id);
    const first = this.#byId.get(session.id) as Session;
    if (first === session) {
      if (session.sameId === undefined) this.#byId.delete(session.id);
      else this.#byId.set(session.id, session.sameId);
    } else {
      let before = first;
      while (before.sameId !== session) before = before.sameId as Session;
      before.sameId = session.sameId;
    }
    session.sameId = undefined;
    this.#sessionCount--;
    if (principal.sessions.size === 0) this.principals.delete(principal.name);
  }

  /**
   * A registered entry for a lock nobody holds or awaits. Idle entries are recycled: with many
   * short-lived locks, an entry and its holder map per grant were a large share of the garbage.
   */
  addLock(name: string, kind: LockKind, limit: number): LockState {
    let lock = this.#idleLocks.pop();
    if (lock === undefined) {
      lock = createLock(name, kind, limit);
    } else {
      // An idle entry is empty already: no holders, no waiters, nothing in use.
      lock.name = name;
      lock.kind = kind;
      lock.limit = limit;
    }
    this.locks.set(name, lock);
    return lock;
  }

  /** Forgets a lock nobody holds or awaits any more. */
  removeLock(lock: LockState): void {
    lock.retell = false;
    this.locks.delete(lock.name);
    if (this.#idleLocks.length < 1024) this.#idleLocks.push(lock);
  }

  /** A hold of `lock` by `session`, in its lock and session and scheduled to expire. */
  addHold(
    lock: LockState,
    session: Session,
    token: number,
    mode: LockMode,
    permits: number,
    request: string,
    grantedAt: number,
    deadline: number,
  ): Hold {
    const hold = createHold(lock, session, token, mode, permits, request, grantedAt, deadline);
    hold.live = true;
    lock.holders.set(token, hold);
    lock.used += permits;
    if (mode === 'exclusive') lock.exclusiveHeld = true;
    session.holds.set(token, hold);
    const principal = session.principal;
    principal.holds++;
    if (addUse(lock, principal, false)) principal.names++;
    this.#holdCount++;
    this.schedule(deadline, hold);
    return hold;
  }

  removeHold(hold: Hold): void {
    hold.live = false;
    const lock = hold.lock;
    lock.holders.delete(hold.token);
    lock.used -= hold.permits;
    if (hold.mode === 'exclusive') lock.exclusiveHeld = false;
    hold.session.holds.delete(hold.token);
    const principal = hold.session.principal;
    principal.holds--;
    if (removeUse(lock, principal, false)) principal.names--;
    this.#holdCount--;
  }

  /** A waiter at the tail of `lock`'s queue, scheduled to time out (see `createWaiter` for `memo`). */
  addWaiter(lock: LockState, session: Session, request: AcquireRequest, queuedAt: number, deadline: number, memo?: Memo): Waiter {
    const waiter = createWaiter(lock, session, request, queuedAt, deadline, memo);
    waiter.live = true;
    waiter.prev = lock.tail;
    if (lock.tail === null) lock.head = waiter;
    else lock.tail.next = waiter;
    lock.tail = waiter;
    lock.waiting++;
    session.waits.set(request.id, waiter);
    const principal = session.principal;
    principal.waits++;
    if (addUse(lock, principal, true)) principal.names++;
    this.#waiterCount++;
    this.schedule(deadline, waiter);
    return waiter;
  }

  removeWaiter(w: Waiter): void {
    w.live = false;
    const lock = w.lock;
    if (w.prev === null) lock.head = w.next;
    else w.prev.next = w.next;
    if (w.next === null) lock.tail = w.prev;
    else w.next.prev = w.prev;
    w.prev = null;
    w.next = null;
    lock.waiting--;
    w.session.waits.delete(w.request.id);
    const principal = w.session.principal;
    principal.waits--;
    if (removeUse(lock, principal, true)) principal.names--;
    this.#waiterCount--;
  }

  /**
   * Adds a deadline for `ref`. Entries are never removed (lazy deletion): those of released holds
   * and granted waiters stay until they come up, and a refreshed or extended deadline is checked
   * when its old entry comes up. Once dead entries outnumber live ones the heap is rebuilt, so
   * memory follows live state.
   */
  schedule(at: number, ref: Expiring): void {
    this.#heap.push(at, ref);
    const live = this.#sessionCount + this.#holdCount + this.#waiterCount;
    if (this.#heap.size > 2 * live + 1024) this.#heap.compact((r) => r.live);
  }

  /** The earliest deadline of something live, or undefined when nothing is scheduled. */
  nextDeadline(): number | undefined {
    for (;;) {
      const top = this.#heap.peek();
      if (top === undefined) return undefined;
      if (top.ref.live) return top.at;
      this.#heap.pop();
    }
  }

  /**
   * Takes off the schedule everything live whose deadline is at or before `now`, in the heap's
   * order (the caller puts it in a canonical one); undefined when nothing is due.
   */
  takeDue(now: number): Due | undefined {
    const top = this.#heap.peek();
    if (top === undefined || top.at > now) return undefined;
    const due: Due = { sessions: [], holds: [], waiters: [] };
    for (let e = this.#heap.peek(); e !== undefined && e.at <= now; e = this.#heap.peek()) {
      this.#heap.pop();
      const ref = e.ref;
      if (!ref.live) continue;
      if (ref.deadline > now) {
        this.#heap.push(ref.deadline, ref); // refreshed or extended since this entry was pushed
        continue;
      }
      if (ref.kind === 'session') due.sessions.push(ref);
      else if (ref.kind === 'hold') due.holds.push(ref);
      else due.waiters.push(ref);
    }
    return due;
  }

  /** Drops everything (a shutdown); the pieces are the caller's to have answered for. */
  clear(): void {
    this.principals.clear();
    this.#byId.clear();
    this.#sessionCount = 0;
    this.locks.clear();
  }
}

