/**
 * Download a model repository from the Hugging Face hub the way huggingface_hub's `snapshot_download` does
 * (_snapshot_download.py, file_download.py), into the shared HF cache layout (see cache.ts) or a plain folder:
 *
 *   1. `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=True` -> commit `sha` and `siblings`
 *      (`rfilename`, `size`, `blobId` = git blob sha1, `lfs.sha256` for LFS files).
 *   2. select the files (select.ts); a file whose blob is already there with the right size is skipped.
 *   3. `GET {endpoint}/{repo}/resolve/{commit}/{path}` (LFS files redirect to a CDN: followed, without the token)
 *      into `blobs/<etag>.incomplete`, resumed with `Range: bytes=N-`, hashed while streaming (sha256 for LFS,
 *      git blob sha1 otherwise), renamed into place only when size and hash match.
 *   4. `snapshots/<commit>/<path>` -> relative symlink to the blob; `refs/<revision>` <- commit.
 *
 * When the listing lacks a file's size or etag (an older mirror), a `HEAD` on the resolve URL supplies them
 * (`X-Linked-Etag` / `ETag`, `X-Linked-Size` / `Content-Length`), as huggingface_hub's get_hf_file_metadata does.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readlink, rename, rm, stat, statfs, symlink, copyFile, writeFile, truncate } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { COMMIT_SHA, hfCacheDir, normalizeEtag, repoCacheDir } from './cache.ts';
import { HubClient, HubError, TransientError, hubEndpoint, hubToken } from './http.ts';
import { selectFiles } from './select.ts';

export const DEFAULT_REPO = 'black-forest-labs/FLUX.1-schnell';

export interface RemoteFile {
  path: string;
  /** Bytes; null when the hub did not say. */
  size: number | null;
  /** sha256 (LFS) or git blob sha1 (regular file); what the blob is named after. */
  etag: string | null;
  lfs: boolean;
}

export interface RepoInfo {
  repo: string;
  revision: string;
  commit: string;
  files: RemoteFile[];
}

export type DownloadEvent =
  | { type: 'plan'; repo: string; commit: string; files: { path: string; size: number; cached: boolean }[]; totalBytes: number; downloadBytes: number }
  | { type: 'start'; path: string; size: number; offset: number }
  | { type: 'progress'; path: string; bytes: number; size: number; delta: number }
  | { type: 'restart'; path: string; reason: string }
  | { type: 'retry'; url: string; attempt: number; delayMs: number; reason: string }
  | { type: 'done'; path: string; status: 'downloaded' | 'cached' };

export interface DownloadOptions {
  /** `org/name`; default black-forest-labs/FLUX.1-schnell. */
  repo?: string;
  /** Branch, tag or commit sha; default `main`. */
  revision?: string;
  /** Plain folder layout (`<dir>/<path>`) instead of the HF cache. */
  localDir?: string;
  /** HF cache folder; default hfCacheDir(env). */
  cacheDir?: string;
  include?: readonly string[];
  exclude?: readonly string[];
  /** Default `$HF_ENDPOINT` or https://huggingface.co. */
  endpoint?: string;
  /** Default `$HF_TOKEN` (or the saved login token); null for none. */
  token?: string | null;
  retries?: number;
  retryDelayMs?: number;
  /** Plan only: fetch the listing, report what would be downloaded, write nothing. */
  dryRun?: boolean;
  onEvent?: (e: DownloadEvent) => void;
  env?: NodeJS.ProcessEnv;
}

export interface DownloadResult {
  repo: string;
  revision: string;
  commit: string;
  /** The snapshot folder (`.../snapshots/<commit>`) or the local dir: pass it to the pipeline. */
  path: string;
  files: { path: string; size: number; status: 'downloaded' | 'cached' | 'planned' }[];
  downloadedBytes: number;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?$/;

export function validateRepoId(repo: string): void {
  if (!REPO_ID.test(repo) || repo.includes('..')) {
    throw new HubError('INVALID_ARGUMENT', `"${repo}" is not a hub repository id: expected org/name, e.g. ${DEFAULT_REPO}`);
  }
}

/** A repo path must stay inside the folder it is written to. */
function checkRepoPath(path: string): void {
  const parts = path.split('/');
  if (!path || path.startsWith('/') || path.includes('\\') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new HubError('HUB_BAD_RESPONSE', `the hub listed an unsafe file name "${path}"; refusing to write it`);
  }
}

const encodePath = (p: string) => p.split('/').map(encodeURIComponent).join('/');

export function resolveUrl(endpoint: string, repo: string, revision: string, path: string): string {
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

/** Step 1: the commit a revision points to and the files it holds. */
export async function fetchRepoInfo(client: HubClient, repo: string, revision: string): Promise<RepoInfo> {
  const url = `${client.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=True`; // as huggingface_hub sends it (requests renders the Python True)
  const what = `listing ${repo}@${revision}`;
  const json = await client.withRetries(what, url, async () => {
    const res = await client.request(url, { headers: { accept: 'application/json' } });
    if (!res.ok) throw await client.statusError(res, repo, what);
    try {
      return (await res.json()) as { sha?: unknown; siblings?: unknown };
    } catch (e) {
      throw new TransientError(`${what}: the answer was not JSON (${(e as Error).message})`);
    }
  });
  if (typeof json.sha !== 'string' || !COMMIT_SHA.test(json.sha) || !Array.isArray(json.siblings)) {
    throw new HubError('HUB_BAD_RESPONSE', `${what}: the answer from ${client.endpoint} has no commit sha or file list; is HF_ENDPOINT a hub?`);
  }
  type Sibling = { rfilename: string; size?: number; blobId?: string; lfs?: { sha256?: string; size?: number } };
  const files = (json.siblings as Sibling[]).map((s): RemoteFile => {
    checkRepoPath(s.rfilename);
    return {
      path: s.rfilename,
      size: s.lfs?.size ?? s.size ?? null,
      etag: s.lfs?.sha256 ?? s.blobId ?? null,
      lfs: !!s.lfs,
    };
  });
  return { repo, revision, commit: json.sha, files };
}

/** HEAD on the resolve URL (redirects to a CDN not followed), for a file the listing did not describe. */
export async function fetchFileMetadata(client: HubClient, repo: string, commit: string, path: string): Promise<{ etag: string; size: number; commit: string | null }> {
  const url = resolveUrl(client.endpoint, repo, commit, path);
  const what = `HEAD ${repo}/${path}`;
  return client.withRetries(what, url, async () => {
    const res = await client.request(url, { method: 'HEAD', headers: { 'accept-encoding': 'identity' }, stopAtCrossOrigin: true });
    if (!(res.ok || (res.status >= 300 && res.status < 400))) throw await client.statusError(res, repo, what);
    const etag = res.headers.get('x-linked-etag') ?? res.headers.get('etag');
    const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length'));
    if (!etag || !Number.isFinite(size)) {
      throw new HubError('HUB_BAD_RESPONSE', `${what}: the hub sent no ETag or size; cannot download it reliably`);
    }
    return { etag: normalizeEtag(etag), size, commit: res.headers.get('x-repo-commit') };
  });
}

type HashKind = 'sha256' | 'git-sha1' | 'none';
function hashKind(etag: string): HashKind {
  if (/^[0-9a-f]{64}$/.test(etag)) return 'sha256';
  if (/^[0-9a-f]{40}$/.test(etag)) return 'git-sha1';
  return 'none';
}

function newHasher(kind: HashKind, size: number): Hash | null {
  if (kind === 'none') return null;
  if (kind === 'sha256') return createHash('sha256');
  // git blob id: sha1("blob <len>\0" + content)
  return createHash('sha1').update(`blob ${size}\0`);
}

async function fileSize(p: string): Promise<number | null> {
  try {
    return (await stat(p)).size;
  } catch {
    return null;
  }
}

async function hashPrefix(hasher: Hash, path: string, bytes: number): Promise<void> {
  if (bytes === 0) return;
  for await (const chunk of createReadStream(path, { start: 0, end: bytes - 1 })) hasher.update(chunk as Buffer);
}

interface FileJob {
  file: RemoteFile & { size: number; etag: string };
  url: string;
  incomplete: string;
  final: string;
}

/**
 * Step 3 for one file: stream into `incomplete` (resuming what is there), verify, rename to `final`.
 * Returns the bytes fetched over the network.
 */
async function downloadOne(client: HubClient, repo: string, job: FileJob, emit: (e: DownloadEvent) => void): Promise<number> {
  const { file, url, incomplete, final } = job;
  const kind = hashKind(file.etag);
  let fetched = 0;
  let digest: string | null = null;
  await mkdir(dirname(incomplete), { recursive: true });
  const what = `downloading ${file.path}`;
  await client.withRetries(what, url, async () => {
    let have = (await fileSize(incomplete)) ?? 0;
    if (have > file.size) {
      await rm(incomplete, { force: true });
      have = 0;
    }
    let hasher = newHasher(kind, file.size);
    if (have < file.size) {
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (have > 0) headers.range = `bytes=${have}-`;
      const res = await client.request(url, { headers });
      if (res.status === 416) {
        await res.body?.cancel().catch(() => {});
        await rm(incomplete, { force: true });
        throw new TransientError(`${file.path}: the server refused to resume (HTTP 416); starting over`);
      }
      if (!res.ok) throw await client.statusError(res, repo, what);
      if (have > 0) {
        const start = res.status === 206 ? Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]) : 0;
        if (start !== have) {
          // the server ignored Range (200) or answered another range: start this file over
          emit({ type: 'restart', path: file.path, reason: res.status === 200 ? 'the server does not support resuming' : `unexpected range start ${start}` });
          have = 0;
          await truncate(incomplete, 0);
        }
      }
      emit({ type: 'start', path: file.path, size: file.size, offset: have });
      if (hasher) await hashPrefix(hasher, incomplete, have);
      const fh = await open(incomplete, have > 0 ? 'a' : 'w');
      let bytes = have;
      try {
        if (!res.body) throw new TransientError(`${file.path}: empty response body`);
        try {
          for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
            if (bytes + chunk.byteLength > file.size) {
              throw new HubError('HUB_SIZE_MISMATCH', `${file.path}: the server sent more than the ${file.size} bytes the hub listed; the download was discarded, run the command again`);
            }
            await fh.write(chunk);
            hasher?.update(chunk);
            bytes += chunk.byteLength;
            fetched += chunk.byteLength;
            emit({ type: 'progress', path: file.path, bytes, size: file.size, delta: chunk.byteLength });
          }
        } catch (e) {
          if (e instanceof HubError) {
            await fh.close().catch(() => {});
            await rm(incomplete, { force: true });
            throw e;
          }
          if ((e as NodeJS.ErrnoException)?.code === 'ENOSPC') {
            throw new HubError('HUB_DISK_FULL', `no space left on the disk while writing ${incomplete}; free some space and run the command again (it resumes)`);
          }
          throw new TransientError(`${file.path}: connection lost after ${bytes} of ${file.size} bytes (${(e as Error)?.message ?? e})`);
        }
      } finally {
        await fh.close().catch(() => {});
      }
      if (bytes < file.size) throw new TransientError(`${file.path}: connection closed after ${bytes} of ${file.size} bytes`);
    } else {
      if (hasher) await hashPrefix(hasher, incomplete, have);
    }
    digest = hasher ? hasher.digest('hex') : null;
  }, `; the partial file is kept and the same command resumes it`);

  const size = await fileSize(incomplete);
  if (size !== file.size || (digest !== null && digest !== file.etag)) {
    await rm(incomplete, { force: true });
    const got = size !== file.size ? `${size} bytes instead of ${file.size}` : `${kind === 'sha256' ? 'sha256' : 'git blob sha1'} ${digest} instead of ${file.etag}`;
    throw new HubError(
      'HUB_HASH_MISMATCH',
      `${file.path} from ${repo} is corrupt: got ${got}. The bad download was deleted; run the command again (if it repeats, the mirror at ${client.endpoint} serves bad data).`,
    );
  }
  await mkdir(dirname(final), { recursive: true });
  await rename(incomplete, final);
  return fetched;
}

async function linkSnapshot(blob: string, link: string): Promise<void> {
  await mkdir(dirname(link), { recursive: true });
  const target = relative(dirname(link), blob).split(sep).join('/');
  try {
    if ((await readlink(link)) === target) return;
  } catch {
    /* absent or not a link */
  }
  await rm(link, { force: true });
  try {
    await symlink(target, link);
  } catch (e) {
    // no symlinks (Windows without developer mode): huggingface_hub copies too
    if ((e as NodeJS.ErrnoException).code === 'EPERM') await copyFile(blob, link);
    else throw e;
  }
}

/** `--dir` mode bookkeeping, as huggingface_hub's local_dir: `<dir>/.cache/huggingface/download/<path>.metadata`. */
function localMetaPath(dir: string, path: string): string {
  return join(dir, '.cache', 'huggingface', 'download', `${path}.metadata`);
}

async function localIsCurrent(dir: string, file: RemoteFile & { size: number; etag: string }): Promise<boolean> {
  if ((await fileSize(join(dir, file.path))) !== file.size) return false;
  try {
    const [, etag] = (await readFile(localMetaPath(dir, file.path), 'utf8')).split('\n');
    return etag === file.etag;
  } catch {
    return false;
  }
}

async function checkFreeSpace(dir: string, needed: number): Promise<void> {
  if (needed <= 0) return;
  let probe = dir;
  for (;;) {
    try {
      const s = await statfs(probe);
      const free = Number(s.bavail) * Number(s.bsize);
      if (free < needed) {
        throw new HubError('HUB_DISK_FULL', `${(needed / 1e9).toFixed(2)} GB to download but only ${(free / 1e9).toFixed(2)} GB free under ${dir}; free some space or choose another place (HF_HUB_CACHE or --dir)`);
      }
      return;
    } catch (e) {
      if (e instanceof HubError) throw e;
      const up = dirname(probe);
      if (up === probe) return;
      probe = up;
    }
  }
}

/** Download (or complete, or just verify the presence of) a repository snapshot. */
export async function downloadRepo(opts: DownloadOptions = {}): Promise<DownloadResult> {
  const env = opts.env ?? process.env;
  const repo = opts.repo ?? DEFAULT_REPO;
  const revision = opts.revision ?? 'main';
  validateRepoId(repo);
  if (!revision || revision.split('/').some((p) => p === '..' || p === '')) {
    throw new HubError('INVALID_ARGUMENT', `"${revision}" is not a revision: use a branch, tag or commit sha`);
  }
  const emit = opts.onEvent ?? (() => {});
  const client = new HubClient({
    endpoint: opts.endpoint ?? hubEndpoint(env),
    token: opts.token === undefined ? hubToken(env) : opts.token,
    retries: opts.retries,
    retryDelayMs: opts.retryDelayMs,
    onRetry: (r) => emit({ type: 'retry', ...r }),
  });

  const info = await fetchRepoInfo(client, repo, revision);
  const { commit } = info;
  const wanted = new Set(selectFiles(info.files.map((f) => f.path), { include: opts.include, exclude: opts.exclude }));
  if (wanted.size === 0) {
    const names = info.files.map((f) => f.path);
    throw new HubError(
      'HUB_NOTHING_SELECTED',
      `no file of ${repo}@${revision} matches the selection; it holds: ${names.slice(0, 20).join(', ')}${names.length > 20 ? ', ...' : ''}. Use --include PATTERN.`,
    );
  }

  const cacheDir = opts.cacheDir ?? hfCacheDir(env);
  const repoDir = repoCacheDir(repo, cacheDir);
  const root = opts.localDir ?? join(repoDir, 'snapshots', commit);
  const jobs: (FileJob & { cached: boolean })[] = [];
  for (const f of info.files) {
    if (!wanted.has(f.path)) continue;
    let { size, etag } = f;
    if (size === null || etag === null) {
      const meta = await fetchFileMetadata(client, repo, commit, f.path);
      size = meta.size;
      etag = meta.etag;
    }
    const file = { ...f, size, etag };
    const url = resolveUrl(client.endpoint, repo, commit, f.path);
    if (opts.localDir) {
      const final = join(opts.localDir, f.path);
      const incomplete = join(opts.localDir, '.cache', 'huggingface', 'download', `${f.path}.incomplete`);
      jobs.push({ file, url, incomplete, final, cached: await localIsCurrent(opts.localDir, file) });
    } else {
      const final = join(repoDir, 'blobs', etag);
      jobs.push({ file, url, incomplete: `${final}.incomplete`, final, cached: (await fileSize(final)) === size });
    }
  }
  const totalBytes = jobs.reduce((s, j) => s + j.file.size, 0);
  const downloadBytes = jobs.reduce((s, j) => s + (j.cached ? 0 : j.file.size), 0);
  emit({ type: 'plan', repo, commit, files: jobs.map((j) => ({ path: j.file.path, size: j.file.size, cached: j.cached })), totalBytes, downloadBytes });

  const result: DownloadResult = { repo, revision, commit, path: root, files: [], downloadedBytes: 0 };
  if (opts.dryRun) {
    result.files = jobs.map((j) => ({ path: j.file.path, size: j.file.size, status: j.cached ? 'cached' : 'planned' }));
    return result;
  }
  await checkFreeSpace(opts.localDir ?? cacheDir, downloadBytes);

  for (const job of jobs) {
    if (!job.cached) result.downloadedBytes += await downloadOne(client, repo, job, emit);
    if (opts.localDir) {
      const meta = localMetaPath(opts.localDir, job.file.path);
      await mkdir(dirname(meta), { recursive: true });
      await writeFile(meta, `${commit}\n${job.file.etag}\n${Date.now() / 1000}\n`);
    } else {
      await linkSnapshot(job.final, join(root, job.file.path));
    }
    const status = job.cached ? 'cached' : 'downloaded';
    emit({ type: 'done', path: job.file.path, status });
    result.files.push({ path: job.file.path, size: job.file.size, status });
  }
  if (!opts.localDir && revision !== commit) {
    const ref = join(repoDir, 'refs', revision);
    await mkdir(dirname(ref), { recursive: true });
    await writeFile(ref, commit);
  }
  return result;
}
