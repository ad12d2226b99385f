/**
 * The job journal: the in-process queue's `JobStore` in an SQLite file (`node:sqlite`, Node 22.13+; no flag there or on Node
 * 24), so a server that is killed (SIGKILL, a crash, a lost machine) loses nothing it accepted. After a restart
 * queued jobs run, interrupted ones are retried or failed with a reason, and owed webhooks are delivered.
 *
 * Every change is one transaction, written before the server answers (WAL, synchronous=FULL). A job's end and the
 * webhook it owes are written together, so a webhook is owed exactly when its job has ended. Finished jobs stay for
 * `--result-ttl` for status look-ups, then go. One server at a time: a second one on the same file is refused while
 * the first one's process lives.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { FluxError } from '@flux-ts/core';
import type { JobData, JobStatus } from './job-queue.ts';
import type { JobStore, PendingDelivery, StoredJob } from './job-store.ts';
import type { Delivery } from './webhook.ts';

/** The part of node:sqlite used here (typed locally: the project's @types/node may predate it). */
interface Statement {
  run(...params: unknown[]): { changes: number | bigint };
  get(...params: unknown[]): Record<string, unknown> | undefined;
  all(...params: unknown[]): Record<string, unknown>[];
}
interface Database {
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}

export class JournalError extends FluxError {
  constructor(message: string) {
    super('journal', message);
    this.name = 'JournalError';
  }
}

/** node:sqlite's DatabaseSync, or undefined (with the reason) on a Node without it. */
export function sqliteAvailable(): { ok: true } | { ok: false; reason: string } {
  try {
    loadSqlite();
    return { ok: true };
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
}

function loadSqlite(): new (path: string) => Database {
  try {
    const mod = createRequire(import.meta.url)('node:sqlite') as { DatabaseSync: new (path: string) => Database };
    return mod.DatabaseSync;
  } catch {
    throw new JournalError(`the job journal needs node:sqlite (Node 22.13 or later without a flag; Node 24 recommended), and this is Node ${process.versions.node}: upgrade Node, or run without a journal (--no-journal: queued jobs and owed webhooks are then lost if the server is killed)`);
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  state TEXT NOT NULL,
  request TEXT NOT NULL,
  image BLOB,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  status TEXT,
  expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (state) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL,
  event TEXT NOT NULL,
  url TEXT NOT NULL,
  body TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 0,
  next_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_at);
CREATE TABLE IF NOT EXISTS owner (k INTEGER PRIMARY KEY CHECK (k = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, since TEXT NOT NULL);
`;

/** Journals open in this process (a second server here on the same file is refused too). */
const OPEN = new Set<string>();

export class SqliteJobStore implements JobStore {
  readonly durable = true;
  readonly path: string;
  private readonly db: Database;
  private readonly q: Record<string, Statement>;

  private constructor(path: string, db: Database) {
    this.path = path;
    this.db = db;
    const p = (sql: string) => db.prepare(sql);
    this.q = {
      has: p('SELECT 1 AS x FROM jobs WHERE id = ?'),
      insert: p('INSERT INTO jobs (id, model, state, request, image, attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      started: p("UPDATE jobs SET state = 'running', attempts = attempts + 1 WHERE id = ?"),
      attempts: p('SELECT attempts FROM jobs WHERE id = ?'),
      requeue: p("UPDATE jobs SET state = 'queued' WHERE id = ?"),
      finish: p('UPDATE jobs SET state = ?, status = ?, image = NULL, expires_at = ? WHERE id = ?'),
      finished: p("SELECT status, expires_at FROM jobs WHERE id = ? AND state NOT IN ('queued', 'running')"),
      unfinished: p("SELECT id, model, state, request, image, attempts, created_at FROM jobs WHERE state IN ('queued', 'running') ORDER BY seq"),
      addDelivery: p('INSERT OR IGNORE INTO deliveries (id, request_id, event, url, body, attempt, next_at) VALUES (?, ?, ?, ?, ?, 0, ?)'),
      due: p('SELECT id, request_id, event, url, body, attempt, next_at FROM deliveries WHERE next_at <= ? ORDER BY next_at, seq LIMIT ?'),
      nextDue: p('SELECT MIN(next_at) AS t FROM deliveries'),
      pending: p('SELECT COUNT(*) AS n FROM deliveries'),
      deleteDelivery: p('DELETE FROM deliveries WHERE id = ?'),
      retry: p('UPDATE deliveries SET attempt = ?, next_at = ? WHERE id = ?'),
      prune: p('DELETE FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?'),
      owner: p('SELECT pid, host FROM owner WHERE k = 1'),
      claim: p('INSERT OR REPLACE INTO owner (k, pid, host, since) VALUES (1, ?, ?, ?)'),
      release: p('DELETE FROM owner WHERE k = 1 AND pid = ?'),
    };
  }

  /** Opens (creating it and its folder if needed) and claims the journal at `path`. */
  static open(path: string): SqliteJobStore {
    const DatabaseSync = loadSqlite();
    path = resolve(path);
    if (OPEN.has(path)) throw new JournalError(`the job journal ${path} is in use by another server in this process; give this one another --journal PATH`);
    let db: Database;
    try {
      mkdirSync(dirname(path), { recursive: true });
      db = new DatabaseSync(path);
      db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
      db.exec(SCHEMA);
    } catch (e) {
      throw new JournalError(`cannot open the job journal ${path}: ${(e as Error).message}; give another --journal PATH`);
    }
    const store = new SqliteJobStore(path, db);
    store.claim();
    OPEN.add(path);
    return store;
  }

  private claim(): void {
    const o = this.q.owner!.get() as { pid: number; host: string } | undefined;
    if (o && o.host === hostname() && o.pid !== process.pid && alive(o.pid)) {
      this.db.close();
      throw new JournalError(`the job journal ${this.path} is in use by another server (pid ${o.pid}); stop it, or give this one another --journal PATH`);
    }
    this.q.claim!.run(process.pid, hostname(), new Date().toISOString());
  }

  private tx<T>(fn: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const out = fn();
      this.db.exec('COMMIT');
      return out;
    } catch (e) {
      this.db.exec('ROLLBACK');
      throw e;
    }
  }

  has(id: string): boolean {
    return this.q.has!.get(id) !== undefined;
  }

  insert(job: StoredJob): void {
    const { image, ...rest } = job.data;
    this.q.insert!.run(job.id, job.data.model, job.state, JSON.stringify(rest.request), image ?? null, job.attempts, job.created_at);
  }

  started(id: string, _startedAt: string, deliveries: readonly Delivery[]): number {
    return this.tx(() => {
      this.q.started!.run(id);
      this.addDeliveries(deliveries);
      return Number((this.q.attempts!.get(id) as { attempts: number } | undefined)?.attempts ?? 1);
    });
  }

  requeue(id: string): void {
    this.q.requeue!.run(id);
  }

  finish(s: JobStatus, deliveries: readonly Delivery[], expiresAt: number): void {
    this.tx(() => {
      this.q.finish!.run(s.status, JSON.stringify(s), expiresAt, s.request_id);
      this.addDeliveries(deliveries);
    });
  }

  private addDeliveries(deliveries: readonly Delivery[]): void {
    const now = Date.now();
    for (const d of deliveries) this.q.addDelivery!.run(d.id, d.request_id, d.event, d.url, d.body, now);
  }

  finished(id: string): JobStatus | undefined {
    const row = this.q.finished!.get(id) as { status: string; expires_at: number } | undefined;
    if (!row || row.expires_at <= Date.now()) return undefined;
    return JSON.parse(row.status) as JobStatus;
  }

  unfinished(): StoredJob[] {
    return this.q.unfinished!.all().map((r) => {
      const data: JobData = { model: r.model as string, request: JSON.parse(r.request as string) as JobData['request'] };
      if (r.image != null) data.image = new Uint8Array(r.image as Uint8Array);
      return { id: r.id as string, data, state: r.state as 'queued' | 'running', attempts: Number(r.attempts), created_at: r.created_at as string };
    });
  }

  due(now: number, limit: number, skip: ReadonlySet<string>): PendingDelivery[] {
    const rows = this.q.due!.all(now, limit + skip.size) as unknown as PendingDelivery[];
    return rows.filter((r) => !skip.has(r.id)).slice(0, limit).map((r) => ({ ...r, attempt: Number(r.attempt), next_at: Number(r.next_at) }));
  }

  nextDueAt(): number | undefined {
    const t = (this.q.nextDue!.get() as { t: number | null }).t;
    return t === null ? undefined : Number(t);
  }

  pendingDeliveries(): number {
    return Number((this.q.pending!.get() as { n: number }).n);
  }

  delivered(id: string): void {
    this.q.deleteDelivery!.run(id);
  }

  retry(id: string, attempt: number, nextAt: number): void {
    this.q.retry!.run(attempt, nextAt, id);
  }

  gaveUp(id: string): void {
    this.q.deleteDelivery!.run(id);
  }

  prune(now: number): void {
    this.q.prune!.run(now);
  }

  close(): void {
    OPEN.delete(this.path);
    try {
      this.q.release!.run(process.pid);
      this.db.close();
    } catch {
      // already closed
    }
  }
}

/** Whether a process lives (a zombie, killed but not yet reaped, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && existsSync('/proc/self/stat')) return false;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
