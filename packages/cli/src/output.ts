/**
 * Where `generate` writes, decided and checked before any model loads, so a finished run is never lost to a bad
 * path: the format from the extension (.png, .jpg/.jpeg, anything else refused), missing folders created, the
 * folder proved writable, file names with the seed and batch index. A write that still fails (disk full) saves the
 * image in the temp folder instead and says so.
 */
import { accessSync, constants, mkdirSync, statSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { FluxError } from '@flux-ts/core';

export type ImageFormat = 'png' | 'jpeg';

export interface OutputPlan {
  /** The folder the files go to. */
  dir: string;
  /** File name without extension: the user's, or null for the default `flux-<seed>`. */
  stem: string | null;
  ext: string;
  format: ImageFormat;
}

const FORMATS: Record<string, ImageFormat> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg' };

function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'not permitted', ENOTDIR: 'a part of the path is a file, not a folder',
    EROFS: 'read-only file system', ENOSPC: 'no space left on the device', EISDIR: 'it is a folder', EEXIST: 'it exists and is not a folder',
  };
  return err.code ? `${why[err.code] ?? err.message.split(':')[0]} (${err.code})` : String(e);
}

/** The plan for `--out` as given (`flag` is how the user typed it), or the default `flux-<seed>.png` here. */
export function planOutput(out: string | undefined, flag: string): OutputPlan {
  if (out === undefined) return { dir: '.', stem: null, ext: '.png', format: 'png' };
  if (out === '') throw new FluxError('INVALID_ARGUMENT', `${flag} needs a file name, e.g. ${flag} out/cat.png`);
  let isDir = out.endsWith('/');
  try {
    isDir ||= statSync(out).isDirectory();
  } catch {
    // absent: a file to create
  }
  if (isDir) return { dir: out, stem: null, ext: '.png', format: 'png' };
  const ext = extname(out);
  const format = FORMATS[ext.toLowerCase()];
  if (!format) {
    throw new FluxError('INVALID_ARGUMENT', `${flag} ${out}: ${ext ? `unknown image format "${ext}"` : 'no file extension'}; name a .png, .jpg or .jpeg file (or a folder, ending in /)`);
  }
  return { dir: dirname(out), stem: basename(out, ext), ext, format };
}

/**
 * The file of image `index` of the run with `seed`: `--out` itself for one image, else the stem with the seed
 * (several seeds) and the index (a batch) appended; `flux-<seed>[-<index>]` without a name.
 */
export function outputPath(plan: OutputPlan, seed: string, index: number, counts: { seeds: number; batch: number }): string {
  const parts = plan.stem === null ? [`flux-${seed}`] : [plan.stem, ...(counts.seeds > 1 ? [seed] : [])];
  if (counts.batch > 1) parts.push(String(index));
  return join(plan.dir, parts.join('-') + plan.ext);
}

/** Creates the plan's folder and proves it writable (a probe file), before anything runs; one line on failure. */
export function prepareOutput(plan: OutputPlan, flag: string): void {
  try {
    mkdirSync(plan.dir, { recursive: true });
  } catch (e) {
    throw new FluxError('OUTPUT_UNWRITABLE', `${flag}: cannot create the folder ${plan.dir}: ${fsReason(e)}; choose another place`);
  }
  const probe = join(plan.dir, `.flux-ts-write-test-${process.pid}`);
  try {
    accessSync(plan.dir, constants.W_OK);
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (e) {
    throw new FluxError('OUTPUT_UNWRITABLE', `${flag}: cannot write in ${plan.dir}: ${fsReason(e)}; choose another place`);
  }
}

/** A target that is a folder cannot be written: say so before the run. */
export function checkTarget(path: string, flag: string): void {
  try {
    if (statSync(path).isDirectory()) throw new FluxError('OUTPUT_UNWRITABLE', `${flag}: ${path} is a folder; give a file name such as ${join(path, 'out.png')}`);
  } catch (e) {
    if (e instanceof FluxError) throw e;
  }
}

/**
 * Writes `bytes` to `path`; when that fails the bytes go to the temp folder and the returned `path` says where
 * (with `error`: the reason the intended place failed).
 */
export function writeOutput(path: string, bytes: Uint8Array): { path: string; error?: string } {
  try {
    writeFileSync(path, bytes);
    return { path };
  } catch (e) {
    const rescue = join(tmpdir(), `flux-ts-${process.pid}-${basename(path)}`);
    writeFileSync(rescue, bytes);
    return { path: rescue, error: `cannot write ${path}: ${fsReason(e)}` };
  }
}
