import { open, unlink } from 'node:fs/promises';
import {
  connectionUrl,
  definitions,
  exchangesFor,
  GUEST,
  generatePassword,
  type NewPassword,
  type PlannedExchange,
  permissionsFor,
  type SetupBrokerSettings,
} from './setup-broker-plan.js';
import { type BrokerExchange, type BrokerUser, Rabbitmqctl, type UserPermissions } from './setup-broker-rabbitmqctl.js';

export interface SetupBrokerIo {
  readonly out: (text: string) => void;
  /** Warnings: what the operator should change by hand. */
  readonly err: (text: string) => void;
}

/** What the broker had before the run, read with rabbitmqctl (reads only). */
interface Existing {
  readonly vhost: boolean;
  readonly users: ReadonlyMap<string, BrokerUser>;
  readonly exchanges: ReadonlyMap<string, BrokerExchange>;
}

/** How long the read-back waits for the import, which RabbitMQ 3.10 calls asynchronous. */
const VERIFY_TIMEOUT_MS = 15_000;
const VERIFY_INTERVAL_MS = 250;

/**
 * `lockq setup-broker`: the vhost, users, permissions and exchanges of docs/security.md §5.4 in
 * one `rabbitmqctl import_definitions`, then read back. A user that exists keeps its password
 * (and tags) unless `resetPasswords`; `guest` is never touched. Returns the exit code (0); a
 * failure throws, having changed nothing unless the import itself ran.
 */
export async function runSetupBroker(s: SetupBrokerSettings, io: SetupBrokerIo): Promise<number> {
  const ctl = new Rabbitmqctl(s.rabbitmqctl);
  const existing = await readExisting(ctl, s.vhost);
  refuseConflictingExchanges(s, existing);

  const fresh = s.users.filter((u) => s.resetPasswords || !existing.users.has(u.name));
  io.out(`lockq setup-broker: vhost ${JSON.stringify(s.vhost)}, prefix ${JSON.stringify(s.prefix)}${s.dryRun ? ' (dry run: nothing is changed)' : ''}\n`);
  io.out(planText(s, existing));
  if (s.dryRun) {
    const who = fresh.length === 0 ? 'no user' : fresh.map((u) => u.name).join(', ');
    io.out(`Would run: ${ctl.describe(['import_definitions'])} (new passwords for ${who}), then read it back.\n`);
    return 0;
  }

  const passwords: NewPassword[] = fresh.map((u) => ({ name: u.name, password: generatePassword() }));
  // The file is written before the import: passwords are never set that nobody can read.
  const written = s.passwordFile !== undefined && passwords.length > 0 ? await writePasswordFile(s.passwordFile, passwords) : undefined;
  try {
    await ctl.importDefinitions(JSON.stringify(definitions(s, passwords)));
  } catch (err) {
    if (written !== undefined) await unlink(written).catch(() => undefined);
    throw err;
  }
  const permissions = await readBack(ctl, s);
  warn(s, existing, permissions, io);

  io.out('Done.\n');
  if (passwords.length === 0) {
    io.out('No password was set: every user existed (--reset-passwords gives them new ones).\n');
  } else if (written !== undefined) {
    io.out(`Passwords of ${passwords.map((p) => p.name).join(', ')} written to ${written} (mode 0600, "user password" lines).\n`);
  } else {
    io.out('Connection URLs; the passwords are shown only now and stored nowhere else:\n');
    const width = Math.max(...passwords.map((p) => p.name.length));
    for (const p of passwords) io.out(`  ${p.name.padEnd(width)}  ${connectionUrl(s, p)}\n`);
  }
  return 0;
}

async function readExisting(ctl: Rabbitmqctl, vhost: string): Promise<Existing> {
  const [users, vhosts] = await Promise.all([ctl.users(), ctl.vhosts()]);
  const there = vhosts.includes(vhost);
  const exchanges = there ? await ctl.exchanges(vhost) : [];
  return { vhost: there, users: new Map(users.map((u) => [u.user, u])), exchanges: new Map(exchanges.map((e) => [e.name, e])) };
}

function sameExchange(planned: PlannedExchange, e: BrokerExchange): boolean {
  return e.type === planned.type && e.durable && !e.auto_delete && !e.internal;
}

/** The import would skip such an exchange silently, and workers and coordinators would fail on it later. */
function refuseConflictingExchanges(s: SetupBrokerSettings, existing: Existing): void {
  for (const planned of exchangesFor(s.prefix)) {
    const e = existing.exchanges.get(planned.name);
    if (e === undefined || sameExchange(planned, e)) continue;
    throw new Error(
      `exchange ${planned.name} exists on vhost ${JSON.stringify(s.vhost)} as ${describeExchange(e)}; lockq needs a durable ` +
        `${planned.type} exchange there: delete it (it is not lockq's) or choose another --prefix. Nothing was changed.`,
    );
  }
}

function describeExchange(e: BrokerExchange): string {
  const flags = [e.durable ? 'durable' : 'transient', ...(e.auto_delete ? ['auto-delete'] : []), ...(e.internal ? ['internal'] : [])];
  return `${e.type}, ${flags.join(', ')}`;
}

function planText(s: SetupBrokerSettings, existing: Existing): string {
  const lines: string[] = [];
  const state = (exists: boolean) => (exists ? 'exists' : s.dryRun ? 'would be created' : 'created');
  lines.push(`  vhost ${s.vhost}: ${state(existing.vhost)}`);
  for (const e of exchangesFor(s.prefix)) lines.push(`  exchange ${e.name} (${e.type}, durable): ${state(existing.exchanges.has(e.name))}`);
  for (const u of s.users) {
    lines.push(`  ${u.role} ${u.name}: ${userState(s, existing.users.get(u.name))}`);
    const p = permissionsFor(u.role, u.name, s.prefix);
    lines.push(`    configure ${p.configure}`, `    write     ${p.write}`, `    read      ${p.read}`);
  }
  return `${lines.join('\n')}\n`;
}

function userState(s: SetupBrokerSettings, existing: BrokerUser | undefined): string {
  const would = s.dryRun ? 'would be ' : '';
  if (existing === undefined) return `${s.dryRun ? 'would be created' : 'created'}, a new password, no tags`;
  const tags = existing.tags.length === 0 ? 'no tags' : `tags ${existing.tags.join(', ')}`;
  if (s.resetPasswords) return `exists (${tags}); password and tags ${would}replaced (new password, no tags)`;
  return `exists (${tags}); password kept (--reset-passwords replaces it)`;
}

/** Creates `path` (never overwriting one) with mode 0600 and one `user password` line per user. */
async function writePasswordFile(path: string, passwords: readonly NewPassword[]): Promise<string> {
  let file: Awaited<ReturnType<typeof open>>;
  try {
    file = await open(path, 'wx', 0o600);
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'EEXIST') throw new Error(`--password-file ${path} exists; setup-broker never overwrites one. Nothing was changed.`);
    throw new Error(`--password-file ${path}: ${(err as Error).message}. Nothing was changed.`);
  }
  try {
    await file.writeFile(passwords.map((p) => `${p.name} ${p.password}\n`).join(''));
  } finally {
    await file.close();
  }
  return path;
}

/**
 * Reads back every planned permission and exchange until they are there: the import is
 * asynchronous, and RabbitMQ skips some conflicts without an error. Returns the vhost's
 * permissions as read.
 */
async function readBack(ctl: Rabbitmqctl, s: SetupBrokerSettings): Promise<readonly UserPermissions[]> {
  const deadline = Date.now() + VERIFY_TIMEOUT_MS;
  for (;;) {
    const [permissions, exchanges] = await Promise.all([ctl.permissions(s.vhost), ctl.exchanges(s.vhost)]).catch(
      (): [UserPermissions[], BrokerExchange[]] => [[], []],
    );
    const missing = missingAfterImport(s, permissions, exchanges);
    if (missing.length === 0) return permissions;
    if (Date.now() > deadline) {
      throw new Error(`the import ran, but reading back vhost ${JSON.stringify(s.vhost)} finds: ${missing.join('; ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, VERIFY_INTERVAL_MS));
  }
}

function missingAfterImport(s: SetupBrokerSettings, permissions: readonly UserPermissions[], exchanges: readonly BrokerExchange[]): string[] {
  const missing: string[] = [];
  for (const u of s.users) {
    const want = permissionsFor(u.role, u.name, s.prefix);
    const got = permissions.find((p) => p.user === u.name);
    if (got === undefined) missing.push(`no permissions for ${u.name}`);
    else if (got.configure !== want.configure || got.write !== want.write || got.read !== want.read) {
      missing.push(`${u.name} has configure ${got.configure} write ${got.write} read ${got.read}`);
    }
  }
  for (const planned of exchangesFor(s.prefix)) {
    const e = exchanges.find((x) => x.name === planned.name);
    if (e === undefined) missing.push(`no exchange ${planned.name}`);
    else if (!sameExchange(planned, e)) missing.push(`exchange ${planned.name} is ${describeExchange(e)}`);
  }
  return missing;
}

/** What the layout does not fix by itself: guest on the vhost, and tags on users it kept. */
function warn(s: SetupBrokerSettings, existing: Existing, permissions: readonly UserPermissions[], io: SetupBrokerIo): void {
  if (permissions.some((p) => p.user === GUEST)) {
    io.err(
      `lockq setup-broker: warning: ${GUEST} can use vhost ${JSON.stringify(s.vhost)}, and with it every queue there: ` +
        `delete it (rabbitmqctl delete_user ${GUEST}) or take it off (rabbitmqctl clear_permissions -p ${shellWord(s.vhost)} ${GUEST})\n`,
    );
  }
  if (s.resetPasswords) return;
  for (const u of s.users) {
    const tags = existing.users.get(u.name)?.tags ?? [];
    if (tags.length === 0) continue;
    io.err(
      `lockq setup-broker: warning: ${u.name} kept its tags ${tags.join(', ')} (lockq's users have none; impersonator ` +
        `would let it send as anyone): rabbitmqctl set_user_tags ${u.name}\n`,
    );
  }
}

/** `text` quoted for a POSIX shell when it needs to be. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_./:-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}
