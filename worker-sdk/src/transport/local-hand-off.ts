import type { ClientTransport, ClientTransportHandlers } from './types.js';

type OnReply = ClientTransportHandlers['onReply'];

/** The reply handlers of the client transports open in this process, by reply address. */
const openHere = new Map<string, OnReply>();

/**
 * Wraps a client transport so that clients of one process can reach each other without the
 * broker. While it is open, its reply handler is reachable by its reply address from the other
 * transports of this process; with `shortcut` (the client's `localHandOff`), a forward to an
 * address open here is delivered to that handler in a microtask, as the memory broker delivers,
 * instead of crossing the broker, with origin `'forward'` as the broker would say. Everything else
 * goes through the wrapped transport.
 */
export class LocalHandOffTransport implements ClientTransport {
  readonly replyAddress: string;
  readonly #inner: ClientTransport;
  readonly #shortcut: boolean;
  #onReply: OnReply | undefined;

  constructor(inner: ClientTransport, options: { readonly shortcut: boolean }) {
    this.#inner = inner;
    this.replyAddress = inner.replyAddress;
    this.#shortcut = options.shortcut;
  }

  async open(handlers: ClientTransportHandlers): Promise<void> {
    await this.#inner.open(handlers);
    this.#onReply = handlers.onReply;
    openHere.set(this.replyAddress, handlers.onReply);
  }

  send(partition: number, body: Uint8Array): Promise<void> {
    return this.#inner.send(partition, body);
  }

  forward(address: string, body: Uint8Array): Promise<void> {
    const here = this.#shortcut ? openHere.get(address) : undefined;
    if (here === undefined) return this.#inner.forward(address, body);
    queueMicrotask(() => here(body, 'forward'));
    return Promise.resolve();
  }

  async close(): Promise<void> {
    if (this.#onReply !== undefined && openHere.get(this.replyAddress) === this.#onReply) openHere.delete(this.replyAddress);
    this.#onReply = undefined;
    await this.#inner.close();
  }
}
