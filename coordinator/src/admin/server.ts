// node:http rather than a framework: five read-only routes do not earn a dependency, and the
// admin listener must stay up when everything else is failing, so the less it pulls in the better.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { LockView, PartitionCounts } from '@lockq/protocol';
import { type Logger, pino } from 'pino';
import type { PartitionStall } from '../runtime/partition-runner.js';

/** What the admin routes read; a {@link Coordinator} is one. */
export interface AdminSource {
  counts(): Map<number, PartitionCounts>;
  locks(): LockView[];
  inspect(lock: string): LockView | null;
  /** Partitions that are not answering; any makes `/readyz` 503. */
  stalled?(): readonly PartitionStall[];
  readonly options: { readonly ownPartitions: readonly number[] };
}

/** Where `/metrics` comes from; a {@link CoordinatorMetrics} is one. */
export interface MetricsText {
  metrics(): Promise<string>;
  readonly contentType: string;
}

export const DEFAULT_ADMIN_HOST = '127.0.0.1';
/** The default port of OpenTelemetry's Prometheus exporter, which scrape configs often already allow. */
export const DEFAULT_ADMIN_PORT = 9464;
export const DEFAULT_ADMIN_MAX_LOCKS = 1000;

export interface AdminServerOptions {
  /**
   * Interface to bind. The views name every worker, lock and token of the coordinator's
   * partitions: bind beyond loopback only to an interface your monitoring alone can reach, or
   * behind a proxy with TLS and authentication (docs/security.md, "What the views show").
   * @defaultValue `127.0.0.1`
   */
  readonly host?: string;
  /** Port to bind; 0 picks a free one (see {@link AdminServer.port}). @defaultValue 9464 */
  readonly port?: number;
  /** The coordinator to serve; when given the server is ready at once, else call {@link AdminServer.serve}. */
  readonly coordinator?: AdminSource;
  /** Serves `/metrics` when given. */
  readonly metrics?: MetricsText;
  /** Most locks listed by `/v1/locks`; more set `truncated`. @defaultValue 1000 */
  readonly maxLocks?: number;
  /** How long {@link AdminServer.close} waits for open requests before cutting them. @defaultValue 5000 */
  readonly closeTimeoutMs?: number;
  /** @defaultValue a silent logger */
  readonly logger?: Logger;
}

/**
 * `starting` until a coordinator is served, `draining` once it is stopping, `stopped` once closed.
 * While `ready`, `/readyz` still answers 503 (`stalled`) when a partition is not answering.
 */
export type AdminState = 'starting' | 'ready' | 'draining' | 'stopped';

/** The JSON of `GET /v1/locks`. */
export interface LocksResponse {
  /** Partitions this coordinator owns, active or not. */
  readonly owned: readonly number[];
  /** Counts of the owned partitions that are active (claimed on their first delivery). */
  readonly partitions: Record<string, PartitionCounts>;
  readonly locks: readonly LockView[];
  /** True when there were more locks than listed. */
  readonly truncated: boolean;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const LOCK_PATH = '/v1/locks/';

/**
 * The coordinator's HTTP side: `/healthz`, `/readyz`, `/metrics`, `/v1/locks` and
 * `/v1/locks/:name`, all read-only: any method but GET and HEAD is 405 on every path. The lock
 * views carry no session or request ids. A failing handler answers 500; it never takes the
 * process down.
 *
 * @example
 * const admin = await AdminServer.listen({ port: 0, metrics });
 * admin.serve(coordinator);          // /readyz turns 200
 * admin.drain();                     // /readyz turns 503 while the coordinator stops
 * await coordinator.stop();
 * await admin.close();
 */
export class AdminServer {
  readonly host: string;
  readonly port: number;
  readonly #server: Server;
  readonly #metrics: MetricsText | undefined;
  readonly #maxLocks: number;
  readonly #closeTimeoutMs: number;
  readonly #log: Logger;
  #source: AdminSource | undefined;
  #state: AdminState = 'starting';
  #closing: Promise<void> | undefined;

  private constructor(server: Server, address: AddressInfo, options: AdminServerOptions, log: Logger) {
    this.#server = server;
    this.host = address.address;
    this.port = address.port;
    this.#metrics = options.metrics;
    this.#maxLocks = options.maxLocks ?? DEFAULT_ADMIN_MAX_LOCKS;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 5000;
    this.#log = log;
    if (options.coordinator !== undefined) this.serve(options.coordinator);
  }

  /** Binds and resolves once listening; rejects when the address cannot be bound. */
  static async listen(options: AdminServerOptions = {}): Promise<AdminServer> {
    const host = options.host ?? DEFAULT_ADMIN_HOST;
    const port = options.port ?? DEFAULT_ADMIN_PORT;
    if (!Number.isInteger(port) || port < 0 || port > 65_535) {
      throw new RangeError(`port: expected an integer from 0 to 65535, got ${String(port)}`);
    }
    const maxLocks = options.maxLocks ?? DEFAULT_ADMIN_MAX_LOCKS;
    if (!Number.isSafeInteger(maxLocks) || maxLocks < 0) {
      throw new RangeError(`maxLocks: expected a non-negative integer, got ${String(maxLocks)}`);
    }
    const log = (options.logger ?? pino({ level: 'silent' })).child({ component: 'admin' });
    let admin: AdminServer | undefined;
    const server = createServer((req, res) => {
      if (admin === undefined) send(res, json(503, { error: 'NOT_READY' }));
      else admin.#handle(req, res);
    });
    // Keep-alive sockets of a scraper must not hold close() open for the default 5 s.
    server.keepAliveTimeout = 2000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => log.error({ err }, 'admin listener failed'));
    admin = new AdminServer(server, server.address() as AddressInfo, options, log);
    log.debug({ url: admin.url }, 'admin listening');
    return admin;
  }

  /** Base URL, e.g. `http://127.0.0.1:9464`. */
  get url(): string {
    const host = this.host.includes(':') ? `[${this.host}]` : this.host;
    return `http://${host}:${this.port}`;
  }

  get state(): AdminState {
    return this.#state;
  }

  /** Serves `coordinator`, which has started and is consuming: `/readyz` turns 200. */
  serve(coordinator: AdminSource): void {
    this.#source = coordinator;
    if (this.#state === 'starting') this.#state = 'ready';
  }

  /** The coordinator is stopping: `/readyz` turns 503 so no new traffic is routed here. */
  drain(): void {
    if (this.#state !== 'stopped') this.#state = 'draining';
  }

  /** Stops listening, lets requests in flight finish (cut after `closeTimeoutMs`). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#state = 'stopped';
      const cut = setTimeout(() => this.#server.closeAllConnections(), this.#closeTimeoutMs);
      cut.unref();
      this.#server.close(() => {
        clearTimeout(cut);
        this.#log.debug('admin closed');
        resolve();
      });
      this.#server.closeIdleConnections();
    });
    return this.#closing;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    let answer: Answer | Promise<Answer>;
    try {
      answer = this.#route(req, res);
    } catch (err) {
      answer = Promise.reject(err);
    }
    if (!(answer instanceof Promise)) {
      send(res, answer);
      return;
    }
    answer.then(
      (a) => send(res, a),
      (err: unknown) => {
        this.#log.error({ err, url: req.url }, 'admin request failed');
        if (res.headersSent) res.destroy();
        else send(res, json(500, { error: 'INTERNAL' }));
      },
    );
  }

  #route(req: IncomingMessage, res: ServerResponse): Answer | Promise<Answer> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return json(405, { error: 'METHOD_NOT_ALLOWED' });
    }
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    // Not `new URL()`: it would resolve `..` and `//` inside lock names, which may contain both.
    const path = q < 0 ? raw : raw.slice(0, q);
    switch (path) {
      case '/healthz':
        return this.#state === 'stopped' ? json(503, { status: 'stopped' }) : json(200, { status: 'ok' });
      case '/readyz':
        return this.#readyAnswer();
      case '/metrics':
        return this.#metricsAnswer();
      case '/v1/locks':
      case '/v1/locks/':
        return this.#locksAnswer();
      default:
        return path.startsWith(LOCK_PATH) ? this.#lockAnswer(path.slice(LOCK_PATH.length)) : json(404, { error: 'NOT_FOUND' });
    }
  }

  /** Ready is more than served: a partition that stopped answering makes the process unready, by name. */
  #readyAnswer(): Answer {
    if (this.#state !== 'ready') return json(503, { status: this.#state });
    const stalled = this.#source?.stalled?.() ?? [];
    return stalled.length === 0 ? json(200, { status: 'ready' }) : json(503, { status: 'stalled', stalled });
  }

  async #metricsAnswer(): Promise<Answer> {
    const metrics = this.#metrics;
    if (metrics === undefined) return json(404, { error: 'NOT_FOUND' });
    return { status: 200, contentType: metrics.contentType, body: await metrics.metrics() };
  }

  #locksAnswer(): Answer {
    const source = this.#source;
    if (source === undefined) return json(503, { error: 'NOT_READY' });
    const partitions: Record<string, PartitionCounts> = {};
    for (const [p, counts] of source.counts()) partitions[String(p)] = counts;
    const all = source.locks();
    const truncated = all.length > this.#maxLocks;
    const locks = truncated ? all.slice(0, this.#maxLocks) : all;
    const body: LocksResponse = { owned: source.options.ownPartitions, partitions, locks, truncated };
    return json(200, body);
  }

  #lockAnswer(encoded: string): Answer {
    const source = this.#source;
    if (source === undefined) return json(503, { error: 'NOT_READY' });
    let name: string;
    try {
      name = decodeURIComponent(encoded);
    } catch {
      return json(400, { error: 'BAD_REQUEST', message: 'lock name is not valid percent-encoding' });
    }
    const view = name === '' ? null : source.inspect(name);
    return view === null ? json(404, { error: 'NOT_FOUND', lock: name }) : json(200, view);
  }
}

/** What a route answers; written by one function, so every answer gets the same headers. */
interface Answer {
  readonly status: number;
  readonly contentType: string;
  readonly body: string;
}

function json(status: number, body: unknown): Answer {
  return { status, contentType: JSON_TYPE, body: JSON.stringify(body) };
}

function send(res: ServerResponse, a: Answer): void {
  res.writeHead(a.status, {
    'content-type': a.contentType,
    'content-length': Buffer.byteLength(a.body),
    'cache-control': 'no-store',
  });
  res.end(a.body);
}
