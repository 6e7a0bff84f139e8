/**
 * The few `rabbitmqctl` calls `lockq setup-broker` makes: reads as JSON, and one definitions
 * import through standard input (so `docker exec -i … rabbitmqctl` works without a shared file).
 * It talks to the node with the Erlang cookie, so it needs neither the management plugin nor a
 * broker user.
 */
import { spawn } from 'node:child_process';
import type { Permissions } from './setup-broker-plan.js';

export interface BrokerUser {
  readonly user: string;
  readonly tags: readonly string[];
}

export interface UserPermissions extends Permissions {
  readonly user: string;
}

export interface BrokerExchange {
  readonly name: string;
  readonly type: string;
  readonly durable: boolean;
  readonly auto_delete: boolean;
  readonly internal: boolean;
}

/** rabbitmqctl could not be run, or exited with an error (its own message included). */
export class RabbitmqctlError extends Error {
  override readonly name = 'RabbitmqctlError';
}

const DEFAULT_TIMEOUT_MS = 60_000;

/** One rabbitmqctl command line, e.g. `['rabbitmqctl']` or `['docker', 'exec', '-i', 'rabbit', 'rabbitmqctl']`. */
export class Rabbitmqctl {
  readonly #command: readonly string[];
  readonly #timeoutMs: number;

  constructor(command: readonly string[], timeoutMs = DEFAULT_TIMEOUT_MS) {
    this.#command = command;
    this.#timeoutMs = timeoutMs;
  }

  /** The command line that runs `args`, for messages and the dry run. */
  describe(args: readonly string[]): string {
    return [...this.#command, ...args].join(' ');
  }

  async users(): Promise<BrokerUser[]> {
    return this.#json(['list_users']);
  }

  async vhosts(): Promise<string[]> {
    return (await this.#json<{ name: string }[]>(['list_vhosts', 'name'])).map((v) => v.name);
  }

  /** Every user's permissions on `vhost` (the vhost must exist). */
  async permissions(vhost: string): Promise<UserPermissions[]> {
    return this.#json(['list_permissions', '-p', vhost]);
  }

  /** The exchanges of `vhost` (the vhost must exist). */
  async exchanges(vhost: string): Promise<BrokerExchange[]> {
    return this.#json(['list_exchanges', '-p', vhost, 'name', 'type', 'durable', 'auto_delete', 'internal']);
  }

  /**
   * Imports a definitions document. RabbitMQ 3.10 says the import is asynchronous, and an
   * exchange that exists with another type is skipped without an error: the caller reads back
   * what it needs.
   */
  async importDefinitions(json: string): Promise<void> {
    await this.#run(['import_definitions'], json);
  }

  async #json<T>(args: readonly string[]): Promise<T> {
    const out = await this.#run([...args, '--formatter', 'json']);
    try {
      return JSON.parse(out) as T;
    } catch {
      throw new RabbitmqctlError(`${this.describe(args)} did not print JSON: ${out.slice(0, 200)}`);
    }
  }

  #run(args: readonly string[], input?: string): Promise<string> {
    const [file = '', ...before] = this.#command;
    const all = [...before, '-q', ...args];
    return new Promise((resolve, reject) => {
      const child = spawn(file, all, { stdio: ['pipe', 'pipe', 'pipe'], timeout: this.#timeoutMs });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
      });
      child.on('error', (err) => reject(new RabbitmqctlError(`cannot run ${this.describe(args)}: ${err.message}`, { cause: err })));
      child.on('close', (code, signal) => {
        if (code === 0) return resolve(stdout);
        const why = signal === null ? `exit code ${code}` : `signal ${signal}`;
        const said = `${stderr}\n${stdout}`.trim().replace(/\s+/g, ' ').slice(0, 500);
        reject(new RabbitmqctlError(`${this.describe(args)} failed (${why}): ${said}`));
      });
      // EPIPE when the command does not read its input (it failed first): the exit says why.
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
    });
  }
}
