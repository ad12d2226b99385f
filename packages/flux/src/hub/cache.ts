/**
 * The Hugging Face hub cache layout, as huggingface_hub writes it (file_download.py), so that a model fetched
 * by `flux-ts download`, `huggingface-cli download` or diffusers is found by either:
 *
 *   <cache>/models--<org>--<name>/
 *     blobs/<etag>                    file content, named by its ETag (sha256 for LFS files, git blob sha1 otherwise)
 *     blobs/<etag>.incomplete         a download in progress (resumed with a Range request)
 *     snapshots/<commit>/<path>       relative symlink to ../../blobs/<etag> (one more ../ per folder in <path>)
 *     refs/<revision>                 the commit sha that <revision> (a branch or tag) pointed to
 *
 * Pure path logic plus tiny synchronous reads; no network.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

export type RepoType = 'model' | 'dataset' | 'space';

/** A 40-hex-digit git commit sha (what `refs/<revision>` holds and `snapshots/` is keyed by). */
export const COMMIT_SHA = /^[0-9a-f]{40}$/;

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? join(homedir(), p.slice(1)) : p;
}

/** `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface` (huggingface_hub constants.py). */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HOME) return resolve(expandHome(env.HF_HOME));
  const xdg = env.XDG_CACHE_HOME ? expandHome(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return resolve(xdg, 'huggingface');
}

/** The hub cache: `$HF_HUB_CACHE` (or the older `$HUGGINGFACE_HUB_CACHE`), else `<hfHome()>/hub`. */
export function hfCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const explicit = env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE;
  return explicit ? resolve(expandHome(explicit)) : join(hfHome(env), 'hub');
}

/** `black-forest-labs/FLUX.1-schnell` -> `models--black-forest-labs--FLUX.1-schnell`. */
export function repoFolderName(repo: string, type: RepoType = 'model'): string {
  return [`${type}s`, ...repo.split('/')].join('--');
}

/** `<cache>/models--org--name`. */
export function repoCacheDir(repo: string, cacheDir: string = hfCacheDir()): string {
  return join(cacheDir, repoFolderName(repo));
}

/** `"abc"`, `W/"abc"` -> `abc` (huggingface_hub `_normalize_etag`). */
export function normalizeEtag(raw: string): string {
  return raw.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

export function blobPath(repo: string, etag: string, cacheDir: string = hfCacheDir()): string {
  return join(repoCacheDir(repo, cacheDir), 'blobs', etag);
}

export function refPath(repo: string, revision: string, cacheDir: string = hfCacheDir()): string {
  return join(repoCacheDir(repo, cacheDir), 'refs', revision);
}

/**
 * The commit a revision points to in the local cache: a commit sha is itself (when its snapshot exists), a branch
 * or tag is read from `refs/<revision>`. Null when the cache knows nothing of it.
 */
export function resolveCachedRevision(repo: string, revision = 'main', cacheDir: string = hfCacheDir()): string | null {
  const repoDir = repoCacheDir(repo, cacheDir);
  if (COMMIT_SHA.test(revision) && existsSync(join(repoDir, 'snapshots', revision))) return revision;
  const ref = refPath(repo, revision, cacheDir);
  if (!existsSync(ref)) return null;
  const sha = readFileSync(ref, 'utf8').trim();
  return COMMIT_SHA.test(sha) ? sha : null;
}

/**
 * `<cache>/models--org--name/snapshots/<commit>` for a revision (branch, tag or commit sha) when that snapshot
 * folder exists, else null. Files inside may still be missing: check the ones you need.
 */
export function snapshotPath(repo: string, revision = 'main', cacheDir: string = hfCacheDir()): string | null {
  const commit = resolveCachedRevision(repo, revision, cacheDir);
  if (!commit) return null;
  const dir = join(repoCacheDir(repo, cacheDir), 'snapshots', commit);
  try {
    return statSync(dir).isDirectory() ? dir : null;
  } catch {
    return null;
  }
}
