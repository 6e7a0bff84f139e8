/**
 * What `lockq setup-broker` creates on RabbitMQ (docs/security.md §5.4), as data: the users and
 * their permissions, the exchanges, and the definitions document `rabbitmqctl import_definitions`
 * takes. Pure apart from the random passwords and salts; no broker is touched here.
 */
import { createHash, randomBytes } from 'node:crypto';
import { deadLetterDestination, forwardExchange, isPrincipal, requestExchange, TOPOLOGY_PREFIX } from '@lockq/protocol';
import { UsageError } from './settings.js';

/** `lockq setup-broker` flags as parseArgs returns them. */
export interface SetupBrokerFlags {
  readonly vhost?: string | undefined;
  readonly prefix?: string | undefined;
  readonly coordinator?: readonly string[] | undefined;
  readonly worker?: readonly string[] | undefined;
  readonly 'password-file'?: string | undefined;
  readonly 'dry-run'?: boolean | undefined;
  readonly 'reset-passwords'?: boolean | undefined;
  readonly rabbitmqctl?: string | undefined;
  readonly host?: string | undefined;
}

export interface SetupBrokerSettings {
  readonly vhost: string;
  readonly prefix: string;
  /** Every user to set up, coordinators first, in the order given. */
  readonly users: readonly PlannedUser[];
  /** Write new passwords here (mode 0600) instead of printing them; never overwrites a file. */
  readonly passwordFile: string | undefined;
  readonly dryRun: boolean;
  /** Give users that already exist a new password (and no tags) too. */
  readonly resetPasswords: boolean;
  /** The rabbitmqctl command and its leading arguments, e.g. `['docker', 'exec', '-i', 'rabbit', 'rabbitmqctl']`. */
  readonly rabbitmqctl: readonly string[];
  /** Host (and port) put in the printed connection URLs. */
  readonly host: string;
}

export type Role = 'coordinator' | 'worker';

export interface PlannedUser {
  readonly name: string;
  readonly role: Role;
}

/** RabbitMQ's three permission patterns of one user on one vhost. */
export interface Permissions {
  readonly configure: string;
  readonly write: string;
  readonly read: string;
}

export interface PlannedExchange {
  readonly name: string;
  readonly type: 'direct' | 'fanout';
}

export const DEFAULT_VHOST = '/';
export const DEFAULT_RABBITMQCTL = 'rabbitmqctl';
export const DEFAULT_URL_HOST = 'localhost';
/** The broker's default user: lockq's layout never uses it, and setup-broker never changes it. */
export const GUEST = 'guest';
/** Same rule as `lockq coordinator --prefix`: topology names are built from it. */
const PREFIX_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/;
/** RabbitMQ keeps vhost names as short strings (at most 255 bytes). */
const MAX_VHOST_BYTES = 255;

/** Flags over defaults; every bad value is named by its flag. */
export function setupBrokerSettings(flags: SetupBrokerFlags): SetupBrokerSettings {
  const vhost = flags.vhost ?? DEFAULT_VHOST;
  if (vhost === '' || Buffer.byteLength(vhost) > MAX_VHOST_BYTES || /\p{Cc}/u.test(vhost)) {
    throw new UsageError(`--vhost: expected 1-255 bytes without control characters, got ${JSON.stringify(vhost)}`);
  }
  const prefix = flags.prefix ?? TOPOLOGY_PREFIX;
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new UsageError(`--prefix: expected 1-64 letters, digits, '_', '-' or '.', got ${JSON.stringify(prefix)}`);
  }
  const coordinators = flags.coordinator ?? [];
  if (coordinators.length === 0) throw new UsageError('--coordinator NAME is required (at least one; repeat it for more)');
  const users = [
    ...coordinators.map((name) => ({ name, role: 'coordinator' as const })),
    ...(flags.worker ?? []).map((name) => ({ name, role: 'worker' as const })),
  ];
  const seen = new Set<string>();
  for (const { name, role } of users) {
    if (!isPrincipal(name)) {
      throw new UsageError(`--${role}: a user name is 1-64 letters, digits, '_' or '-' (no '.'), got ${JSON.stringify(name)}`);
    }
    if (name === GUEST) throw new UsageError(`--${role}: setup-broker never touches ${GUEST}; delete it or keep it off the vhost`);
    if (seen.has(name)) throw new UsageError(`--${role}: ${name} is named twice; a user is a coordinator or a worker, once`);
    seen.add(name);
  }
  const rabbitmqctl = (flags.rabbitmqctl ?? DEFAULT_RABBITMQCTL).trim().split(/\s+/);
  if (rabbitmqctl[0] === '') throw new UsageError('--rabbitmqctl: expected a command, e.g. "docker exec -i rabbit rabbitmqctl"');
  const host = flags.host ?? DEFAULT_URL_HOST;
  if (host === '' || /[\s/@]/.test(host)) throw new UsageError(`--host: expected a host name, optionally with :port, got ${JSON.stringify(host)}`);
  return Object.freeze({
    vhost,
    prefix,
    users: Object.freeze(users),
    passwordFile: flags['password-file'],
    dryRun: flags['dry-run'] ?? false,
    resetPasswords: flags['reset-passwords'] ?? false,
    rabbitmqctl: Object.freeze(rabbitmqctl),
    host,
  });
}

/** `text` as a regular expression matching exactly itself (RabbitMQ's patterns are PCRE-like). */
export function escapeRegex(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/**
 * The permissions of docs/security.md §5.4. A coordinator declares, binds and consumes request
 * queues and publishes replies through the default exchange; a worker publishes only through
 * the request and forward exchanges, and declares, binds and reads only its own reply queues.
 * `name` is a principal, so it has no regex metacharacters and no `.`.
 */
export function permissionsFor(role: Role, name: string, prefix: string): Permissions {
  const p = escapeRegex(prefix);
  if (role === 'coordinator') {
    return {
      configure: `^${p}\\.(requests(\\.\\d+)?|forwards|dead-letter)$`,
      write: `^(amq\\.default|${p}\\.(requests(\\.\\d+)?|dead-letter))$`,
      read: `^${p}\\.(requests(\\.\\d+)?|dead-letter)$`,
    };
  }
  const replies = `${p}\\.replies\\.${name}\\.`;
  return {
    configure: `^${replies}`,
    write: `^(${p}\\.requests|${p}\\.forwards|${replies}.*)$`,
    read: `^(${p}\\.forwards|${replies}.*)$`,
  };
}

/**
 * The exchanges workers need before any coordinator has run: requests and forwards (direct), and
 * the dead-letter exchange as the coordinator declares it (a durable fanout; the coordinator
 * declares the bounded queue behind it, whose length is its own setting).
 */
export function exchangesFor(prefix: string): readonly PlannedExchange[] {
  return [
    { name: requestExchange(prefix), type: 'direct' },
    { name: forwardExchange(prefix), type: 'direct' },
    { name: deadLetterDestination(prefix), type: 'fanout' },
  ];
}

/** A password for a broker user: 24 random bytes, base64url (URL-safe, 32 characters). */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * The `password_hash` RabbitMQ's `rabbit_password_hashing_sha256` stores and compares:
 * base64(salt ‖ sha256(salt ‖ utf8(password))) with a 4-byte random salt.
 */
export function rabbitPasswordHash(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256').update(Buffer.concat([salt, Buffer.from(password, 'utf8')])).digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

/** A user whose password this run sets. */
export interface NewPassword {
  readonly name: string;
  readonly password: string;
}

/**
 * The definitions document for `rabbitmqctl import_definitions`: the vhost, the users in
 * `passwords` (created, or replaced with no tags), every planned user's permissions, and the
 * exchanges. A user left out of `passwords` keeps its password and tags; its permissions on this
 * vhost are still set.
 */
export function definitions(s: SetupBrokerSettings, passwords: readonly NewPassword[]): unknown {
  return {
    vhosts: [{ name: s.vhost }],
    users: passwords.map(({ name, password }) => ({
      name,
      password_hash: rabbitPasswordHash(password),
      hashing_algorithm: 'rabbit_password_hashing_sha256',
      tags: [],
    })),
    permissions: s.users.map(({ name, role }) => ({ user: name, vhost: s.vhost, ...permissionsFor(role, name, s.prefix) })),
    exchanges: exchangesFor(s.prefix).map(({ name, type }) => ({
      name,
      vhost: s.vhost,
      type,
      durable: true,
      auto_delete: false,
      internal: false,
      arguments: {},
    })),
  };
}

/** The URL a user connects with; the vhost percent-encoded (`/` is `%2F`). */
export function connectionUrl(s: SetupBrokerSettings, user: NewPassword): string {
  return `amqp://${user.name}:${user.password}@${s.host}/${encodeURIComponent(s.vhost)}`;
}
