/**
 * `flux inspect`: what is in a checkpoint file, a sharded index or a model folder, read from the headers alone
 * (a 23.8 GB transformer answers in milliseconds). Reports the format, the variant, counts, dtypes, and the keys
 * that are missing, unexpected or of the wrong shape against the expected FLUX.1 architecture (weights/architectures.ts:
 * the models' specs through the layouts' rules), compared by the loader's own check (weights/validate.ts).
 */
import { existsSync, readdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FluxError } from '@flux-ts/core';
import { autoEncoderParamsFromDiffusers } from '../autoencoder/config.ts';
import { clipTextConfigFromJson } from '../clip/config.ts';
import { fluxParamsFromDiffusers, type FluxVariant } from '../transformer/config.ts';
import { t5ConfigFromJson } from '../t5/config.ts';
import {
  clipTextArchitecture,
  diffusersTransformerArchitecture,
  diffusersVaeArchitecture,
  t5EncoderArchitecture,
  defaultArchitecture,
  type Architecture,
} from './architectures.ts';
import { listCheckpoints, readCheckpointHeader } from './checkpoint.ts';
import { detectFormat, stripPrefix } from './detect.ts';
import { DTYPE_SIZES } from './dtypes.ts';
import type { WeightsFormat } from './layout.ts';
import { compareKeys, type Mismatch } from './validate.ts';
import { formatBytes } from '../format.ts';
import { isDir, readJson } from '../shared/files.ts';

export type InspectFormat = WeightsFormat | 'diffusers-pipeline' | 'folder' | 'unknown';

export interface InspectReport {
  path: string;
  format: InspectFormat;
  /** Transformers: `dev` when the checkpoint has a guidance embedder, else `schnell`. */
  variant?: FluxVariant;
  /** The .safetensors files read. */
  files: string[];
  /** Prefix stripped from the keys (e.g. `model.diffusion_model.`). */
  prefix?: string;
  /** Where the expected architecture came from: a config.json next to the weights, or the FLUX.1 defaults. */
  expectedFrom?: string;
  tensors: number;
  /** Element count over all tensors. */
  parameters: number;
  /** Element count of the expected architecture. */
  expectedParameters?: number;
  /** Bytes of tensor data. */
  bytes: number;
  /** dtype -> number of tensors. */
  dtypes: Record<string, number>;
  missing: string[];
  unexpected: string[];
  mismatched: Mismatch[];
  /** Folders: one report per component (sub-folder or file). */
  components?: Record<string, InspectReport>;
  notes?: string[];
}

const INDEX_SUFFIX = '.safetensors.index.json';

/** diffusers `model_index.json` classes whose folders hold weights, and the format each should be. */
const PIPELINE_WEIGHT_CLASSES: Record<string, WeightsFormat> = {
  FluxTransformer2DModel: 'diffusers-transformer',
  AutoencoderKL: 'diffusers-vae',
  T5EncoderModel: 't5-encoder',
  CLIPTextModel: 'clip-text',
};

export async function inspectPath(path: string): Promise<InspectReport> {
  const s = await stat(path).catch((cause) => {
    throw new FluxError('NOT_FOUND', `${path}: not found (${(cause as NodeJS.ErrnoException).code ?? cause}); pass a .safetensors file, a *${INDEX_SUFFIX} or a model folder`);
  });
  if (s.isDirectory()) return inspectFolder(path);
  return inspectCheckpoint(path);
}

/** One checkpoint: a .safetensors file or a sharded index. */
export async function inspectCheckpoint(path: string): Promise<InspectReport> {
  const ckpt = readCheckpointHeader(path);
  {
    const det = detectFormat(ckpt.tensors.keys());
    const tensors = stripPrefix(ckpt.tensors, det.prefix);
    const dtypes: Record<string, number> = {};
    let parameters = 0;
    let bytes = 0;
    for (const t of tensors.values()) {
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
      parameters += t.shape.reduce((a, b) => a * b, 1);
      bytes += t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[t.dtype];
    }
    const base = {
      path,
      format: det.format as InspectFormat,
      ...(det.variant ? { variant: det.variant } : {}),
      files: [...ckpt.files],
      ...(det.prefix ? { prefix: det.prefix } : {}),
      tensors: tensors.size,
      parameters,
    };
    const counts = { bytes, dtypes };
    if (det.format === 'unknown') {
      const notes = ['not a FLUX.1 transformer, VAE, T5 or CLIP checkpoint: no known key names (keys are not checked)'];
      return { ...base, ...counts, missing: [], unexpected: [], mismatched: [], notes };
    }
    const { arch, from, notes } = expectedArchitecture(det.format, det.variant, dirname(ckpt.path));
    return {
      ...base,
      expectedParameters: arch.parameters,
      ...counts,
      expectedFrom: from,
      ...compareKeys(tensors, arch),
      ...(notes.length ? { notes } : {}),
    };
  }
}

/**
 * The architecture to compare with: built from the dims of the `config.json` beside the weights when it is the
 * config of that kind of model (diffusers / transformers folders), else the full-size FLUX.1 defaults.
 */
function expectedArchitecture(
  format: WeightsFormat,
  variant: FluxVariant | undefined,
  dir: string,
): { arch: Architecture; from: string; notes: string[] } {
  const notes: string[] = [];
  const fallback = () => ({
    arch: defaultArchitecture(format, variant),
    from: format.endsWith('transformer') ? `FLUX.1 ${variant} defaults` : 'FLUX.1 defaults',
    notes,
  });
  if (format === 'bfl-transformer' || format === 'bfl-vae') return fallback();
  const configPath = join(dir, 'config.json');
  if (!existsSync(configPath)) return fallback();
  const json = readJson(configPath, 're-download the file');
  const c = json;
  const cls = typeof c._class_name === 'string' ? c._class_name : undefined;
  const modelType = typeof c.model_type === 'string' ? c.model_type : undefined;
  let arch: Architecture | undefined;
  switch (format) {
    case 'diffusers-transformer':
      if (cls === undefined || cls === 'FluxTransformer2DModel') arch = diffusersTransformerArchitecture(fluxParamsFromDiffusers(json, configPath));
      break;
    case 'diffusers-vae':
      if (cls === undefined || cls === 'AutoencoderKL') arch = diffusersVaeArchitecture(autoEncoderParamsFromDiffusers(json, configPath));
      break;
    case 't5-encoder':
      if (modelType === undefined || modelType === 't5' || modelType === 'umt5') arch = t5EncoderArchitecture(t5ConfigFromJson(json, configPath));
      break;
    case 'clip-text':
      if (modelType === undefined || modelType === 'clip_text_model' || modelType === 'clip') arch = clipTextArchitecture(clipTextConfigFromJson(json, configPath));
      break;
  }
  if (!arch) {
    notes.push(`${configPath} describes ${cls ?? modelType ?? 'another model'}, not a ${format}: ignored`);
    return fallback();
  }
  return { arch, from: configPath, notes };
}

/** A folder: a diffusers pipeline (model_index.json), one component folder, or a folder of separate checkpoints. */
async function inspectFolder(dir: string): Promise<InspectReport> {
  const modelIndex = join(dir, 'model_index.json');
  if ((await stat(modelIndex).catch(() => undefined))?.isFile()) return inspectPipeline(dir, modelIndex);
  const ckpts = listCheckpoints(dir);
  if (ckpts.length === 1) return inspectCheckpoint(join(dir, ckpts[0]));
  const components: Record<string, InspectReport> = {};
  if (ckpts.length > 1) {
    for (const c of ckpts) components[c] = await inspectCheckpoint(join(dir, c));
  } else {
    for (const sub of readdirSync(dir).sort()) {
      const p = join(dir, sub);
      if (isDir(p) && listCheckpoints(p).length > 0) components[sub] = await inspectFolder(p);
    }
  }
  if (Object.keys(components).length === 0) {
    const orphans = readdirSync(dir).filter((n) => n.endsWith('.safetensors')).sort();
    if (orphans.length > 0) {
      throw new FluxError('NOT_FOUND', `${dir}: holds shard files (${orphans.slice(0, 3).join(', ')}${orphans.length > 3 ? ', …' : ''}) but no *${INDEX_SUFFIX} naming them; download the index file too, or pass one shard`);
    }
    throw new FluxError('NOT_FOUND', `${dir}: no .safetensors files, *${INDEX_SUFFIX} or model_index.json in this folder; pass a checkpoint file or a model folder`);
  }
  return aggregate(dir, 'folder', components, []);
}

async function inspectPipeline(dir: string, modelIndexPath: string): Promise<InspectReport> {
  const index = readJson(modelIndexPath, 're-download the file');
  const components: Record<string, InspectReport> = {};
  const missing: string[] = [];
  const notes: string[] = [];
  for (const [name, value] of Object.entries(index)) {
    if (name.startsWith('_') || !Array.isArray(value) || value.length !== 2 || value[1] === null) continue;
    const cls = String(value[1]);
    const sub = join(dir, name);
    const want = PIPELINE_WEIGHT_CLASSES[cls];
    const hasWeights = isDir(sub) && listCheckpoints(sub).length > 0;
    if (!hasWeights) {
      if (want) missing.push(`${name}/ (${cls} weights)`);
      else if (!isDir(sub)) missing.push(`${name}/ (${cls})`);
      continue;
    }
    const report = await inspectFolder(sub);
    components[name] = report;
    if (want && report.format !== want) notes.push(`${name}/: model_index.json says ${cls} (${want}) but the weights look like ${report.format}`);
  }
  return aggregate(dir, 'diffusers-pipeline', components, missing, notes);
}

/** A folder's report: totals over its components; problem keys prefixed with `<component>/`. */
function aggregate(path: string, format: InspectFormat, components: Record<string, InspectReport>, missing: string[], notes: string[] = []): InspectReport {
  const r: InspectReport = {
    path,
    format,
    files: [],
    tensors: 0,
    parameters: 0,
    bytes: 0,
    dtypes: {},
    missing: [...missing],
    unexpected: [],
    mismatched: [],
    components,
  };
  for (const [name, c] of Object.entries(components)) {
    r.files.push(...c.files);
    r.tensors += c.tensors;
    r.parameters += c.parameters;
    r.bytes += c.bytes;
    for (const [d, n] of Object.entries(c.dtypes)) r.dtypes[d] = (r.dtypes[d] ?? 0) + n;
    r.missing.push(...c.missing.map((k) => `${name}/${k}`));
    r.unexpected.push(...c.unexpected.map((k) => `${name}/${k}`));
    r.mismatched.push(...c.mismatched.map((m) => ({ ...m, key: `${name}/${m.key}` })));
  }
  if (notes.length) r.notes = notes;
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------
// Text output
// ---------------------------------------------------------------------------------------------------------------------

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

const SHOWN = 10;

function problemLines(label: string, items: string[], indent: string): string[] {
  const lines = [`${indent}${label.padEnd(12)}${items.length}`];
  for (const it of items.slice(0, SHOWN)) lines.push(`${indent}  ${it}`);
  if (items.length > SHOWN) lines.push(`${indent}  … and ${items.length - SHOWN} more (--json lists all)`);
  return lines;
}

function reportLines(r: InspectReport, indent: string, nested: boolean): string[] {
  const row = (k: string, v: string) => `${indent}${k.padEnd(12)}${v}`;
  const lines: string[] = [];
  if (!nested) lines.push(row('path', r.path));
  lines.push(row('format', r.variant ? `${r.format} (${r.variant})` : r.format));
  if (r.components === undefined && r.files.length > 1) lines.push(row('files', `${r.files.length} shards`));
  if (r.prefix) lines.push(row('prefix', `${r.prefix} (stripped)`));
  lines.push(row('tensors', String(r.tensors)));
  const expected = r.expectedParameters !== undefined && r.expectedParameters !== r.parameters ? `, expected ${r.expectedParameters.toLocaleString('en-US')}` : '';
  lines.push(row('parameters', `${formatCount(r.parameters)} (${r.parameters.toLocaleString('en-US')}${expected})`));
  lines.push(row('size', formatBytes(r.bytes)));
  const dtypes = Object.entries(r.dtypes).sort((a, b) => b[1] - a[1]).map(([d, n]) => `${d} ${n}`).join(', ');
  lines.push(row('dtypes', dtypes || '-'));
  if (r.expectedFrom) lines.push(row('expected', r.expectedFrom));
  if (r.components) {
    for (const [name, c] of Object.entries(r.components)) {
      lines.push(`${indent}${name}/`);
      lines.push(...reportLines(c, indent + '  ', true));
    }
    if (r.missing.length) lines.push(...problemLines('missing', r.missing, indent));
    for (const n of r.notes ?? []) lines.push(row('note', n));
    return lines;
  }
  if (r.format !== 'unknown') {
    lines.push(...problemLines('missing', r.missing, indent));
    lines.push(...problemLines('unexpected', r.unexpected, indent));
    lines.push(
      ...problemLines('mismatched', r.mismatched.map((m) => `${m.key}: expected [${m.expected.join(', ')}], got [${m.actual.join(', ')}]`), indent),
    );
  }
  for (const n of r.notes ?? []) lines.push(row('note', n));
  return lines;
}

/** A readable table: format, variant, counts, dtypes, and the first problems of each kind. */
export function formatInspectReport(r: InspectReport): string {
  const lines = reportLines(r, '', false);
  const problems = r.missing.length + r.unexpected.length + r.mismatched.length;
  if (r.format === 'unknown') lines.push('unknown format: keys not checked');
  else if (problems === 0) lines.push('ok: every expected tensor is present with its shape');
  else lines.push(`${problems} problem(s): ${r.missing.length} missing, ${r.unexpected.length} unexpected, ${r.mismatched.length} mismatched`);
  return lines.join('\n');
}
