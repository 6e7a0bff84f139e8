import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WriteRecord {
  readonly key: string;
  readonly token: number;
  readonly worker: string;
  readonly accepted: boolean;
  readonly at: number;
}

/**
 * A resource protected by fencing tokens, served over HTTP so worker processes can use it: it
 * refuses any write whose token is lower than the highest it has accepted for that key, and
 * records every write for the checks after a run.
 */
export class FencedResource {
  readonly history: WriteRecord[] = [];
  readonly #highest = new Map<string, number>();
  readonly #values = new Map<string, number>();
  readonly #server: Server;
  url = '';

  constructor() {
    this.#server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const reply = (body: object) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'GET' && url.pathname === '/read') {
        reply({ ok: true, value: this.read(url.searchParams.get('key') ?? '') });
        return;
      }
      let raw = '';
      req.on('data', (c: Buffer) => {
        raw += c.toString();
      });
      req.on('end', () => {
        const { key, token, value, worker } = JSON.parse(raw) as { key: string; token: number; value: number; worker: string };
        reply({ ok: this.write(key, token, value, worker), value: this.read(key) });
      });
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
    return this.url;
  }

  write(key: string, token: number, value: number, worker: string): boolean {
    const accepted = token >= (this.#highest.get(key) ?? 0);
    if (accepted) {
      this.#highest.set(key, token);
      if (value >= 0) this.#values.set(key, value);
    }
    this.history.push({ key, token, worker, accepted, at: Date.now() });
    return accepted;
  }

  read(key: string): number {
    return this.#values.get(key) ?? 0;
  }

  /** Accepted writes whose token went backwards or repeated across workers: must be none. */
  violations(): WriteRecord[] {
    const bad: WriteRecord[] = [];
    const last = new Map<string, WriteRecord>();
    for (const w of this.history) {
      if (!w.accepted) continue;
      const prev = last.get(w.key);
      if (prev !== undefined && (w.token < prev.token || (w.token === prev.token && w.worker !== prev.worker))) bad.push(w);
      last.set(w.key, w);
    }
    return bad;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
