/**
 * The worker side of a broker (the seam is written down in docs/transports.md): bytes and
 * topology names in, bytes out. No driver type crosses this interface; each adapter owns its
 * connection and reconnects by itself, saying so through `onReconnect` (or `onError` when it
 * gives up). Every adapter passes `defineTransportContract` in `test/transport-contract.ts`.
 */
export interface ClientTransport {
  /** Where replies to this client are published; stable across reconnects and for one `(workerId, instance)`. */
  readonly replyAddress: string;
  /**
   * Connects, declares the reply destination and starts delivering replies in arrival order,
   * including those published while this client was away. A failed first `open` may be retried.
   */
  open(handlers: ClientTransportHandlers): Promise<void>;
  /**
   * Sends one request to partition `partition`; resolves once the broker has accepted it.
   * Requests to one partition arrive in `send` order, calls not awaited included.
   * Rejects with an error whose `refused` is true when the broker refused this very message
   * (a full queue, no queue, a name it cannot carry): it will not be delivered, and the caller
   * should be told at once.
   * Any other rejection (a lost connection) may be followed by `onReconnect`, after which the
   * caller re-sends what is still in flight.
   */
  send(partition: number, body: Uint8Array): Promise<void>;
  /**
   * Publishes `body` straight to another client's reply address (a hand-off: the holder of a
   * contended lock passes the successor its grant). Best effort: a message to an address that no
   * longer exists is dropped, and a rejection (not connected) means it was not sent; the
   * coordinator sends the same grant itself anyway. Resolves once the broker has accepted it.
   */
  forward(address: string, body: Uint8Array): Promise<void>;
  /**
   * Stops delivering replies, acknowledges those handed over, and closes the connection.
   * Idempotent; a closed transport is not reopened.
   */
  close(): Promise<void>;
}

export interface ClientTransportHandlers {
  /**
   * Replies in arrival order, at least once: after a reconnect one may come again. `origin` says
   * who the broker says published it, where the transport can tell (RabbitMQ: the exchange it
   * came through): `'coordinator'` for what only a coordinator can publish, `'forward'` for a
   * hand-off another worker forwarded. Absent when the transport cannot tell (docs/security.md §6.2).
   */
  onReply(body: Uint8Array, origin?: ReplyOrigin): void;
  /** The connection was re-established and replies flow again; requests in flight may be lost and must be sent again. */
  onReconnect?(): void;
  /** A failure the transport could not recover from by itself, e.g. it gave up reconnecting (`reconnect.attempts`). */
  onError?(error: Error): void;
}

/** Who published a reply, as far as the transport can tell (see `onReply`). */
export type ReplyOrigin = 'coordinator' | 'forward';

/** Options every client transport accepts. */
export interface ClientTransportOptions {
  /**
   * Who this client is to the coordinator (docs/security.md §5): the broker user it connects as
   * (RabbitMQ: the URL's user, `guest` without one). Set it only when the broker cannot tell from
   * the URL (certificate login). `[A-Za-z0-9_-]{1,64}`. Its reply address lies in this
   * principal's namespace.
   */
  readonly principal?: string;
  readonly workerId: string;
  /** Unique per client instance, so two clients with one worker id have separate reply queues. */
  readonly instance: string;
  readonly prefix?: string;
}

/** Whether `err` says the broker refused this very message (see `send`): it was never delivered. */
export function refusedByBroker(err: unknown): boolean {
  const e = err as { refused?: unknown; cause?: { refused?: unknown } } | null | undefined;
  // The request table wraps a transport's own error as the cause of a LockqError.
  return e?.refused === true || e?.cause?.refused === true;
}
