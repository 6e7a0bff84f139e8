/**
 * The records of a partition's changelog (the Kafka store's compacted topic) and how a claim
 * folds them back into what the partition resumes from. Pure: no kafkajs, no I/O.
 *
 * Keys are chosen so that compaction, which keeps only the newest record of each key and drops
 * a key whose newest record is a tombstone, keeps exactly what a restore needs:
 *
 * | key | value (JSON) | written by |
 * |---|---|---|
 * | `term` | `{ epoch, tokenCeiling }` | each claim; an append that raises the token ceiling |
 * | `snapshot` | `{ epoch, through, snapshot }`: the core's snapshot, covering every journal entry of earlier terms and the first `through` of term `epoch` | each snapshot |
 * | `j:<epoch>:<n>` | the term's n-th {@link JournalEntry} (n from 0) | each append |
 * | `j:<epoch>:<n>` | tombstone (null value) | the snapshot that covers it, in its transaction |
 * | `claim` | `{ at }`: the wall clock when the last claim began (for operators; a restore ignores it) | each claim, before it reads |
 */
import { Buffer } from 'node:buffer';
import type { CoreSnapshot } from '../core/snapshot.js';
import type { JournalEntry } from './types.js';

/** The key of the term record. */
export const TERM_KEY = 'term';
/** The key of the snapshot record. */
export const SNAPSHOT_KEY = 'snapshot';
/** The key of the record each claim writes before it reads. */
export const CLAIM_KEY = 'claim';

/** A record as read back from the changelog, in offset order. */
export interface ChangelogRecord {
  readonly key: string | null;
  /** Null: a tombstone. */
  readonly value: Buffer | null;
  readonly offset: string;
}

/** A record to write: key and value (null for a tombstone). */
export interface ChangelogWrite {
  readonly key: string;
  readonly value: Buffer | null;
}

/** The term record's value. */
export interface TermRecord {
  readonly epoch: number;
  readonly tokenCeiling: number;
}

/** The snapshot record's value. */
export interface SnapshotRecord {
  readonly epoch: number;
  /** Journal entries of term `epoch` numbered below this are in the snapshot. */
  readonly through: number;
  readonly snapshot: CoreSnapshot;
}

/** A journal entry with where it sits. */
export interface JournalRecord {
  readonly key: string;
  readonly epoch: number;
  readonly n: number;
  readonly entry: JournalEntry;
}

/** What a changelog holds, folded. */
export interface FoldedChangelog {
  /** The newest term; null for a partition never claimed (or whose topic was deleted). */
  readonly term: TermRecord | null;
  /** The highest token ceiling the term records and live journal entries name; 0 when none. */
  readonly tokenCeiling: number;
  readonly snapshot: SnapshotRecord | null;
  /** Journal entries after the snapshot, oldest first: what the claim replays. */
  readonly journal: readonly JournalRecord[];
  /** Journal keys still live that the snapshot already covers: the next snapshot tombstones them. */
  readonly covered: readonly string[];
}

/** The key of term `epoch`'s `n`-th journal entry. */
export function journalKey(epoch: number, n: number): string {
  return `j:${epoch}:${n}`;
}

const JOURNAL_KEY = /^j:(\d{1,16}):(\d{1,16})$/;

function parseJournalKey(key: string): { epoch: number; n: number } | null {
  const m = JOURNAL_KEY.exec(key);
  if (m === null) return null;
  return { epoch: Number(m[1]), n: Number(m[2]) };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function termWrite(term: TermRecord): ChangelogWrite {
  return { key: TERM_KEY, value: json({ epoch: term.epoch, tokenCeiling: term.tokenCeiling }) };
}

/**
 * The record a claim writes before it reads: the transactional producer sends it only once the
 * previous owner is fenced and its own previous transaction is settled (see `KafkaStore.claim`).
 */
export function claimWrite(atMs: number): ChangelogWrite {
  return { key: CLAIM_KEY, value: json({ at: atMs }) };
}

export function journalWrite(epoch: number, n: number, entry: JournalEntry): ChangelogWrite {
  return { key: journalKey(epoch, n), value: json(entry) };
}

export function snapshotWrite(record: SnapshotRecord): ChangelogWrite {
  return { key: SNAPSHOT_KEY, value: json({ epoch: record.epoch, through: record.through, snapshot: record.snapshot }) };
}

export function tombstone(key: string): ChangelogWrite {
  return { key, value: null };
}

/** A changelog record that cannot be read: a claim refuses to resume from partial state. */
export class ChangelogFormatError extends Error {
  override name = 'ChangelogFormatError';
}

function parse(record: ChangelogRecord, what: string): unknown {
  try {
    return JSON.parse((record.value as Buffer).toString('utf8'));
  } catch (err) {
    throw new ChangelogFormatError(`the ${what} record at offset ${record.offset} is not JSON`, { cause: err });
  }
}

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

/** Whether journal position (epoch, n) is inside the snapshot. */
function covers(snapshot: SnapshotRecord | null, epoch: number, n: number): boolean {
  return snapshot !== null && (epoch < snapshot.epoch || (epoch === snapshot.epoch && n < snapshot.through));
}

/**
 * Folds a partition's changelog, read in offset order (committed records only), into what a
 * claim resumes from. Works on the log before and after compaction alike: the newest record of
 * each key wins, a tombstone deletes its key, and journal entries the snapshot covers are left
 * out even if their tombstones are missing. Throws {@link ChangelogFormatError} on a record it
 * cannot read rather than resume from part of the state. Records with other keys are ignored.
 */
export function foldChangelog(records: Iterable<ChangelogRecord>): FoldedChangelog {
  let term: TermRecord | null = null;
  let snapshot: SnapshotRecord | null = null;
  const journal = new Map<string, JournalRecord>();
  for (const record of records) {
    const key = record.key;
    if (key === null) continue;
    if (key === TERM_KEY) {
      if (record.value === null) continue; // nobody writes one; a term is never forgotten
      const t = parse(record, 'term') as Partial<TermRecord> | null;
      if (!isCount(t?.epoch) || !isCount(t?.tokenCeiling)) throw new ChangelogFormatError(`the term record at offset ${record.offset} is malformed`);
      // Terms only rise; the max also covers a log read across an odd compaction.
      term = term === null ? { epoch: t.epoch, tokenCeiling: t.tokenCeiling } : { epoch: Math.max(term.epoch, t.epoch), tokenCeiling: Math.max(term.tokenCeiling, t.tokenCeiling) };
      continue;
    }
    if (key === SNAPSHOT_KEY) {
      if (record.value === null) {
        snapshot = null;
        continue;
      }
      const s = parse(record, 'snapshot') as Partial<SnapshotRecord> | null;
      if (!isCount(s?.epoch) || !isCount(s?.through) || typeof s?.snapshot !== 'object' || s.snapshot === null) {
        throw new ChangelogFormatError(`the snapshot record at offset ${record.offset} is malformed`);
      }
      snapshot = { epoch: s.epoch, through: s.through, snapshot: s.snapshot };
      continue;
    }
    const at = parseJournalKey(key);
    if (at === null) continue;
    if (record.value === null) {
      journal.delete(key);
      continue;
    }
    const entry = parse(record, 'journal') as Partial<JournalEntry> | null;
    if (typeof entry?.now !== 'number' || !Array.isArray(entry.requests)) throw new ChangelogFormatError(`the journal record ${key} at offset ${record.offset} is malformed`);
    journal.set(key, { key, epoch: at.epoch, n: at.n, entry: entry as JournalEntry });
  }
  const live = [...journal.values()].sort((a, b) => a.epoch - b.epoch || a.n - b.n);
  let tokenCeiling = term?.tokenCeiling ?? 0;
  for (const j of live) if (j.entry.tokenCeiling !== undefined && j.entry.tokenCeiling > tokenCeiling) tokenCeiling = j.entry.tokenCeiling;
  return {
    term,
    tokenCeiling,
    snapshot,
    journal: live.filter((j) => !covers(snapshot, j.epoch, j.n)),
    covered: live.filter((j) => covers(snapshot, j.epoch, j.n)).map((j) => j.key),
  };
}
