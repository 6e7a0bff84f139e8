import { createSecureContext } from 'node:tls';

/** PEM text as read from a `.pem` file: a string or the file's bytes. */
export type Pem = string | Buffer;

/**
 * Client-side TLS for a broker or store connection (`amqps://`, `rediss://`). Every value is
 * **PEM contents**, not a file path: read the files yourself (the CLI's `--tls-ca`, `--tls-cert`
 * and `--tls-key` take paths and do that). The server's certificate is always verified, host
 * name included; there is deliberately no way to turn that off (docs/security.md §8).
 *
 * @example
 * const tls = { ca: readFileSync('ca.pem'), cert: readFileSync('client.pem'), key: readFileSync('client.key') };
 * const client = await LockClient.connect('amqps://rabbit.internal:5671', { tls });
 */
export interface TlsOptions {
  /**
   * The CA certificates a server's certificate must chain to (one PEM may hold several). When
   * given they replace Node's built-in CAs, and `NODE_EXTRA_CA_CERTS`, for this connection.
   * @defaultValue Node's CAs
   */
  readonly ca?: Pem | readonly Pem[];
  /** This client's certificate (chain), for a server that asks for one. Needs `key`. @defaultValue none */
  readonly cert?: Pem;
  /** The private key of `cert`, unencrypted. Needs `cert`. @defaultValue none */
  readonly key?: Pem;
}

/** {@link TlsOptions} checked, in the shape `node:tls` `connect` takes. */
export interface ResolvedTlsOptions {
  readonly ca?: Pem | Pem[];
  readonly cert?: Pem;
  readonly key?: Pem;
  /** Always true, so `NODE_TLS_REJECT_UNAUTHORIZED=0` cannot turn verification off either. */
  readonly rejectUnauthorized: true;
}

/** How a resolver names a field in its errors: `tls.ca` by default, a CLI flag in the CLI. */
export type TlsFieldName = (field: 'ca' | 'cert' | 'key') => string;

const defaultName: TlsFieldName = (field) => `tls.${field}`;

/**
 * Checks TLS options, naming the bad field: PEM contents (a path is refused with a hint), a
 * certificate only with its key and the reverse, and material OpenSSL can load, with a key that
 * belongs to its certificate, so a mistake fails at start-up rather than on every reconnect.
 * Accepts its own output (`rejectUnauthorized: true`), so resolving twice is harmless.
 */
export function resolveTlsOptions(tls: TlsOptions | undefined, name: TlsFieldName = defaultName): ResolvedTlsOptions {
  if (tls === undefined) return Object.freeze({ rejectUnauthorized: true });
  if (typeof tls !== 'object' || tls === null) throw new RangeError('tls: expected an object with ca, cert and key');
  for (const [key, value] of Object.entries(tls)) {
    if (key === 'ca' || key === 'cert' || key === 'key') continue;
    if (key === 'rejectUnauthorized' && value === true) continue;
    throw new RangeError(`tls.${key}: not an option (only ca, cert and key; server certificates are always verified)`);
  }
  const ca = tls.ca === undefined ? undefined : (Array.isArray(tls.ca) ? tls.ca : [tls.ca]).map((p) => checkPem(name('ca'), p));
  const cert = tls.cert === undefined ? undefined : checkPem(name('cert'), tls.cert);
  const key = tls.key === undefined ? undefined : checkPem(name('key'), tls.key);
  if ((cert === undefined) !== (key === undefined)) {
    const [given, missing] = cert === undefined ? [name('key'), name('cert')] : [name('cert'), name('key')];
    throw new RangeError(`${given}: given without ${missing} (a client certificate needs its private key, and the reverse)`);
  }
  loadable(name('ca'), { ca });
  if (cert !== undefined) loadable(`${name('cert')} / ${name('key')}`, { cert, key });
  return Object.freeze({
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    rejectUnauthorized: true,
  });
}

/** PEM, not a path or DER: the likeliest mistake is passing the file's name. */
function checkPem(field: string, value: unknown): Pem {
  const text = typeof value === 'string' ? value : Buffer.isBuffer(value) ? value.toString('latin1') : undefined;
  if (text === undefined) throw new RangeError(`${field}: expected PEM contents as a string or Buffer`);
  if (!text.includes('-----BEGIN ')) {
    throw new RangeError(`${field}: expected PEM contents ("-----BEGIN …"), not a file path or DER; read the file first`);
  }
  return value as Pem;
}

/** Lets OpenSSL parse the material now (a broken PEM, a key that is not the certificate's). */
function loadable(field: string, material: { ca?: Pem[] | undefined; cert?: Pem; key?: Pem | undefined }): void {
  try {
    createSecureContext(material);
  } catch (cause) {
    throw new RangeError(`${field}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
