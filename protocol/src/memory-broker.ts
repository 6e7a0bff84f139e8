/** A batch of requests and, beside it, who sent each (what the publisher said it is). */
type BatchHandler = (batch: readonly Uint8Array[], principals: readonly (string | undefined)[]) => Promise<void>;

/**
 * Who published a reply, as a subscriber is told: `'coordinator'` for `publishReply`'s default,
 * `'forward'` for a worker's hand-off (the origin a RabbitMQ delivery's exchange gives).
 */
export type MemoryReplyOrigin = 'coordinator' | 'forward';

/** A reply subscriber: each reply with who published it. */
type ReplySubscriber = (body: Uint8Array, origin: MemoryReplyOrigin) => void;

interface RequestQueue {
  messages: Uint8Array[];
  principals: (string | undefined)[];
  /** Single active consumer, as on RabbitMQ: the first is active, the rest stand by in order. */
  consumers: BatchHandler[];
  busy: boolean;
}

interface ReplyQueue {
  pending: Uint8Array[];
  origins: MemoryReplyOrigin[];
  subscriber: ReplySubscriber | null;
  scheduled: boolean;
}

/**
 * An in-process broker: per-partition request queues consumed in batches by one consumer, and
 * per-address reply queues that buffer until subscribed (like a durable reply queue). Everything
 * crosses it as bytes, so the codec is exercised exactly as on a real broker. Like RabbitMQ's
 * `user_id`, a request carries the principal its publisher gives (there is nobody to check it in
 * one process), and a reply says whether a coordinator or a forwarding worker published it.
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
      q = { messages: [], principals: [], consumers: [], busy: false };
      this.#requests.set(partition, q);
    }
    return q;
  }

  /**
   * Queues a request from `principal`: in one process the broker takes the client's word for it
   * (everything in the process is trusted), as RabbitMQ takes a validated `user_id`.
   */
  publishRequest(partition: number, body: Uint8Array, principal?: string): void {
    const q = this.#queue(partition);
    q.messages.push(body);
    q.principals.push(principal);
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
      const principals = q.principals;
      q.messages = [];
      q.principals = [];
      handler(batch, principals).then(
        () => this.#afterBatch(q),
        () => {
          // A failed batch goes back to the head of the queue for redelivery, like a nack.
          q.messages = batch.concat(q.messages);
          q.principals = principals.concat(q.principals);
          this.#afterBatch(q);
        },
      );
    });
  }

  #afterBatch(q: RequestQueue): void {
    q.busy = false;
    if (q.consumers.length > 0 && q.messages.length > 0) this.#dispatch(q);
  }

  /** Queues `body` for the subscriber of `address`; `origin` is who it says published it. */
  publishReply(address: string, body: Uint8Array, origin: MemoryReplyOrigin = 'coordinator'): void {
    const q = this.#replyQueue(address);
    if (q.subscriber === null && q.pending.length >= this.maxBufferedReplies) return;
    q.pending.push(body);
    q.origins.push(origin);
    this.#flushReplies(q);
  }

  subscribeReplies(address: string, subscriber: ReplySubscriber): void {
    const q = this.#replyQueue(address);
    q.subscriber = subscriber;
    this.#flushReplies(q);
  }

  #replyQueue(address: string): ReplyQueue {
    let q = this.#replies.get(address);
    if (q === undefined) {
      q = { pending: [], origins: [], subscriber: null, scheduled: false };
      this.#replies.set(address, q);
    }
    return q;
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
      const origins = q.origins;
      q.pending = [];
      q.origins = [];
      for (const [i, body] of pending.entries()) sub(body, origins[i] ?? 'coordinator');
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

