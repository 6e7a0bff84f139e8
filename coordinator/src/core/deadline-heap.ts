/**
 * A binary min-heap of deadlines. Entries are never removed or re-keyed in place: the owner of an
 * entry checks, when it is popped, whether it still matters (lazy deletion), which keeps extend and
 * session refresh O(1). Ties break by insertion order, so expiry order is deterministic.
 */
export interface HeapEntry<T> {
  readonly at: number;
  readonly seq: number;
  readonly ref: T;
}

export class DeadlineHeap<T> {
  readonly #items: HeapEntry<T>[] = [];
  #seq = 0;

  get size(): number {
    return this.#items.length;
  }

  push(at: number, ref: T): void {
    const items = this.#items;
    const entry: HeapEntry<T> = { at, seq: this.#seq++, ref };
    let i = items.length;
    items.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = items[parent] as HeapEntry<T>;
      if (!before(entry, p)) break;
      items[i] = p;
      i = parent;
    }
    items[i] = entry;
  }

  /** Drops every entry `keep` rejects and restores heap order, in O(n). */
  compact(keep: (ref: T) => boolean): void {
    const items = this.#items;
    let n = 0;
    for (const e of items) if (keep(e.ref)) items[n++] = e;
    items.length = n;
    items.sort((a, b) => (before(a, b) ? -1 : 1)); // a sorted array is a valid heap
  }

  peek(): HeapEntry<T> | undefined {
    return this.#items[0];
  }

  pop(): HeapEntry<T> | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    const n = items.length;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const left = items[l] as HeapEntry<T>;
      const right = items[r];
      const child = right !== undefined && before(right, left) ? r : l;
      const c = items[child] as HeapEntry<T>;
      if (!before(c, last)) break;
      items[i] = c;
      i = child;
    }
    items[i] = last;
    return top;
  }
}

function before<T>(a: HeapEntry<T>, b: HeapEntry<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
