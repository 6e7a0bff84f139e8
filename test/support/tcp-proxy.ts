import { createConnection, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/**
 * A TCP proxy in the test process, between a client (a worker or a coordinator) and the broker,
 * to make network faults happen at a chosen moment: hold back one direction's bytes (a confirm
 * or a delivery that never arrives), then cut the connection with them still in flight. New
 * connections after a cut pass normally, so the client's reconnect succeeds.
 */
export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<{ client: Socket; upstream: Socket }>();
  /** Bytes broker → client are dropped while true (never delivered: the connection is cut after). */
  #holdDown = false;
  /** Bytes client → broker are dropped while true. */
  #holdUp = false;
  port = 0;

  constructor(target: { readonly host: string; readonly port: number }) {
    this.#server = createServer((client) => {
      const upstream = createConnection(target);
      const pair = { client, upstream };
      this.#pairs.add(pair);
      const end = () => {
        this.#pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      upstream.on('data', (d: Buffer) => {
        if (!this.#holdDown) client.write(d);
      });
      client.on('data', (d: Buffer) => {
        if (!this.#holdUp) upstream.write(d);
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.port = (this.#server.address() as AddressInfo).port;
    return `127.0.0.1:${this.port}`;
  }

  /** Connections open through the proxy now. */
  get connections(): number {
    return this.#pairs.size;
  }

  /** From now on, drop what the broker sends to the clients (confirms, deliveries). */
  holdDownstream(): void {
    this.#holdDown = true;
  }

  /** From now on, drop what the clients send to the broker (publishes, acks). */
  holdUpstream(): void {
    this.#holdUp = true;
  }

  /** Destroys every open connection (whatever was held back is lost) and lets new ones pass. */
  cut(): void {
    for (const { client, upstream } of [...this.#pairs]) {
      client.destroy();
      upstream.destroy();
    }
    this.#pairs.clear();
    this.#holdDown = false;
    this.#holdUp = false;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
