/**
 * The worker side of a broker: bytes and topology names in, bytes out. No driver type crosses
 * this interface; each adapter owns its connection.
 */
export interface ClientTransport {
  /** Where replies to this client are published; stable across reconnects. */
  readonly replyAddress: string;
  /** Connects, declares the reply destination and starts delivering replies in arrival order. */
  open(handlers: ClientTransportHandlers): Promise<void>;
  /** Sends one request to partition `partition`; resolves once the broker has accepted it. */
  send(partition: number, body: Uint8Array): Promise<void>;
  /** Stops delivering replies and closes the connection. Idempotent. */
  close(): Promise<void>;
}

export interface ClientTransportHandlers {
  onReply(body: Uint8Array): void;
  /** The connection was re-established; requests in flight may be lost and must be sent again. */
  onReconnect?(): void;
  /** A failure the transport could not recover from by itself (it keeps trying where it can). */
  onError?(error: Error): void;
}

/** Options every client transport accepts. */
export interface ClientTransportOptions {
  readonly workerId: string;
  /** Unique per client instance, so two clients with one worker id have separate reply queues. */
  readonly instance: string;
  readonly prefix?: string;
}
