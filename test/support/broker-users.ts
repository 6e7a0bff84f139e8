/**
 * What the suites that run `lockq setup-broker` share: running it (the built CLI), the users and
 * URLs it prints, removing a run's vhost and users afterwards, and the one question the
 * permission tests ask the broker: does it close a fresh channel, and with which code?
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { AMQP_URL } from './brokers.js';
import { CLI, cleanEnv } from './processes.js';
import { waitFor } from './wait-for.js';

const execFileP = promisify(execFile);

/** `rabbitmqctl -q ARGS`; its stdout. */
export async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await execFileP('rabbitmqctl', ['-q', ...args], { timeout: 30_000 });
  return stdout;
}

/** `rabbitmqctl -q ARGS` with `input` on its standard input (`import_definitions` reads it there). */
export function rabbitmqctlWithInput(input: string, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile('rabbitmqctl', ['-q', ...args], { timeout: 30_000 }, (err, stdout) => (err === null ? resolve(stdout) : reject(err)));
    child.stdin?.end(input);
  });
}

export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Host and port of the suites' RabbitMQ, for setup-broker's `--host` (so its URLs connect here). */
export const BROKER_HOST = new URL(AMQP_URL).host;

/** Runs `lockq setup-broker ARGS` from the built CLI (`npx tsc -b` first). */
export function setupBroker(args: readonly string[], timeoutMs = 60_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'setup-broker', ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`lockq setup-broker ${args.join(' ')} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The connection URL setup-broker printed for each user it gave a password, by user name. */
export function printedUrls(stdout: string): Map<string, string> {
  const urls = new Map<string, string>();
  for (const m of stdout.matchAll(/^ {2}(\S+) +(amqp:\/\/\S+)$/gm)) urls.set(m[1] as string, m[2] as string);
  return urls;
}

/** Like {@link setupBroker}, but it must succeed; returns each new user's URL. */
export async function setUpUsers(args: readonly string[]): Promise<Map<string, string>> {
  const r = await setupBroker(args);
  if (r.code !== 0) throw new Error(`lockq setup-broker exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return printedUrls(r.stdout);
}

/** Names of the broker's vhosts and users. */
export async function vhostsAndUsers(): Promise<{ vhosts: string[]; users: string[] }> {
  const [vhosts, users] = await Promise.all([rabbitmqctl('list_vhosts', 'name', '--formatter', 'json'), rabbitmqctl('list_users', '--formatter', 'json')]);
  return {
    vhosts: (JSON.parse(vhosts) as { name: string }[]).map((v) => v.name),
    users: (JSON.parse(users) as { user: string }[]).map((u) => u.user),
  };
}

/** Deletes a run's vhost (with every queue and exchange in it) and its users; what is not there is skipped. */
export async function dropVhostAndUsers(vhost: string, users: readonly string[]): Promise<void> {
  const there = await vhostsAndUsers();
  if (there.vhosts.includes(vhost)) await rabbitmqctl('delete_vhost', vhost);
  for (const u of users) if (there.users.includes(u)) await rabbitmqctl('delete_user', u);
}

/**
 * Runs `act` on a fresh confirm channel of `conn` and waits for its publishes to be confirmed.
 * Resolves with the AMQP code the broker closed the channel with (403 access refused, 406
 * precondition failed, …), or `'open'` when it did not (the channel is then closed here). One
 * channel per question: a refusal closes it.
 */
export async function closeCode(conn: ChannelModel, act: (ch: ConfirmChannel) => unknown): Promise<number | 'open'> {
  const ch = await conn.createConfirmChannel();
  let code: number | undefined;
  ch.on('error', (err: { code?: number }) => {
    code = err.code ?? -1;
  });
  let closed = false;
  ch.on('close', () => {
    closed = true;
  });
  try {
    await act(ch);
    await ch.waitForConfirms();
  } catch {
    // The operation failed because the channel was closed: the code arrives on 'error'.
  }
  if (!closed && code === undefined) {
    await ch.close();
    return 'open';
  }
  return waitFor(() => code, 'the channel’s close code');
}
