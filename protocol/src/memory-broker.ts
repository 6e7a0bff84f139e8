type BatchHandler = (batch: readonly Uint8Array[]) => Promise<void>;

interface RequestQueue {
  messages: Uint8Array[];
  /** Single active consumer, as on RabbitMQ: the first is active, the rest stand by in order. */
  consumers: BatchHandler[];
  busy: boolean;
}

interface ReplyQueue {
  pending: Uint8Array[];
  subscriber: ((body: Uint8Array) => void) | null;
  scheduled: boolean;
}

/**
 * An in-process broker: per-partition request queues consumed in batches by one consumer, and
 * per-address reply queues that buffer until subscribed (like a durable reply queue). Everything
 * crosses it as bytes, so the codec is exercised exactly as on a real broker.
 */
export class MemoryBroker {
  readonly #requests = new Map<number, RequestQueue>();
  readonly #replies = new Map<string, ReplyQueue>();
  /** Requests refused as poison, with their code, for inspection by tests and operators. */
  readonly deadLetters: { readonly partition: number; readonly body: Uint8Array; readonly code: string }[] = [];
  /** Bound on a reply queue with no subscriber, like RabbitMQ's queue length limit. */
  readonly maxBufferedReplies: number;
  /** Reply queues with something to deliver: all are delivered in one microtask, not one each. */
  #ready: ReplyQueue[] = [];

  constructor(options: { readonly maxBufferedReplies?: number } = {}) {
    this.maxBufferedReplies = options.maxBufferedReplies ?? 10_000;
  }

  #queue(partition: number): RequestQueue {
    let q = this.#requests.get(partition);
    if (q === undefined) {
      q = { messages: [], consumers: [], busy: false };
      this.#requests.set(partition, q);
    }
    return q;
  }

  publishRequest(partition: number, body: Uint8Array): void {
    const q = this.#queue(partition);
    q.messages.push(body);
    if (q.consumers.length > 0 && !q.busy && q.messages.length === 1) this.#dispatch(q);
  }

  /**
   * Attaches a consumer to a partition. Batches go to the first consumer only, one at a time, in
   * order; later consumers stand by and the next takes over when the active one stops.
   */
  consumeRequests(partition: number, handler: BatchHandler): void {
    const q = this.#queue(partition);
    if (!q.consumers.includes(handler)) q.consumers.push(handler);
    if (!q.busy && q.messages.length > 0) this.#dispatch(q);
  }

  /** Detaches `handler`; a batch it is handling still finishes (and is acked or returned). */
  stopConsuming(partition: number, handler: BatchHandler): void {
    const q = this.#requests.get(partition);
    if (q === undefined) return;
    q.consumers = q.consumers.filter((h) => h !== handler);
    if (!q.busy && q.consumers.length > 0 && q.messages.length > 0) this.#dispatch(q);
  }

  #dispatch(q: RequestQueue): void {
    q.busy = true;
    // A macrotask boundary lets every request published in the same tick join one batch.
    setImmediate(() => {
      const handler = q.consumers[0];
      if (handler === undefined || q.messages.length === 0) {
        q.busy = false;
        return;
      }
      const batch = q.messages;
      q.messages = [];
      handler(batch).then(
        () => this.#afterBatch(q),
        () => {
          // A failed batch goes back to the head of the queue for redelivery, like a nack.
          q.messages = batch.concat(q.messages);
          this.#afterBatch(q);
        },
      );
    });
  }

  #afterBatch(q: RequestQueue): void {
    q.busy = false;
    if (q.consumers.length > 0 && q.messages.length > 0) this.#dispatch(q);
  }

  publishReply(address: string, body: Uint8Array): void {
    let q = this.#replies.get(address);
    if (q === undefined) {
      q = { pending: [], subscriber: null, scheduled: false };
      this.#replies.set(address, q);
    }
    if (q.subscriber === null && q.pending.length >= this.maxBufferedReplies) return;
    q.pending.push(body);
    this.#flushReplies(q);
  }

  subscribeReplies(address: string, subscriber: (body: Uint8Array) => void): void {
    let q = this.#replies.get(address);
    if (q === undefined) {
      q = { pending: [], subscriber: null, scheduled: false };
      this.#replies.set(address, q);
    }
    q.subscriber = subscriber;
    this.#flushReplies(q);
  }

  unsubscribeReplies(address: string): void {
    this.#replies.delete(address);
  }

  #flushReplies(q: ReplyQueue): void {
    if (q.scheduled || q.subscriber === null || q.pending.length === 0) return;
    q.scheduled = true;
    this.#ready.push(q);
    if (this.#ready.length === 1) queueMicrotask(this.#deliverReplies);
  }

  readonly #deliverReplies = (): void => {
    const ready = this.#ready;
    this.#ready = [];
    // All unmarked first: a subscriber that throws must not leave the queues after it stuck.
    for (const q of ready) q.scheduled = false;
    for (const q of ready) {
      const sub = q.subscriber;
      if (sub === null) continue;
      const pending = q.pending;
      q.pending = [];
      for (const body of pending) sub(body);
    }
  };
}

const brokers = new Map<string, MemoryBroker>();

/**
 * The process-wide broker for a `memory:` URL (`memory:` and `memory://default` are the same one),
 * so an embedded coordinator and `LockClient.connect('memory:')` in one process find each other.
 */
export function memoryBroker(name = 'default'): MemoryBroker {
  let broker = brokers.get(name);
  if (broker === undefined) {
    broker = new MemoryBroker();
    brokers.set(name, broker);
  }
  return broker;
}

/** `memory:` → 'default'; `memory://tests-3` → 'tests-3'. */
export function memoryBrokerName(url: string): string {
  const rest = url.replace(/^memory:(\/\/)?/, '');
  return rest === '' ? 'default' : rest;
}

