/**
 * Generation parameters carried in the PNG: an A1111-style `parameters` text chunk (what image viewers and web UIs
 * show) and a `flux-ts` JSON chunk (what `pnpm flux generate --from-metadata` reads back).
 */
import { readFileSync } from 'node:fs';
import { FluxError } from '@flux-ts/core';
import { isJpeg } from '../image/header.ts';
import { readJpegComments } from '../image/jpeg.ts';
import { isPng, readPngText } from '../image/png.ts';

export const METADATA_KEY = 'flux-ts';
export const PARAMETERS_KEY = 'parameters';

/** This library's version (packages/flux/package.json). */
export const FLUX_TS_VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

export interface GenerationMetadata {
  prompt: string;
  /** The batch seed (a decimal string when above 2^53); absent when given latents replaced everything it draws. */
  seed?: number | string;
  steps: number;
  guidance: number;
  width: number;
  height: number;
  /** Model name (repo id, folder or file name) and variant. */
  model: string;
  variant: string;
  max_sequence_length: number;
  /** The precision the models computed in ('bf16' or 'fp32'; images before it was recorded were fp32). */
  precision?: string;
  num_images: number;
  /** Index of this image in its batch (images of one batch share the seed). */
  index: number;
  /** Image-to-image only. */
  strength?: number;
  /** Image-to-image only: the input file's name (pass it again with --image to reproduce). */
  image?: string;
  /** Initial latents file (--latents), when one was used instead of the seed's noise, and its values' sha256. */
  latents?: string;
  latents_sha256?: string;
  version: string;
}

/** A1111 `parameters`: the prompt, then one line of `Key: value` pairs. */
export function a1111Parameters(m: GenerationMetadata): string {
  const pairs: [string, string | number][] = [
    ['Steps', m.steps],
    ['Sampler', 'Euler'],
    ['Schedule type', 'Simple'],
    ['CFG scale', 1],
    ['Distilled CFG Scale', m.guidance],
    ...(m.seed !== undefined ? [['Seed', m.seed] as [string, string | number]] : []),
    ['Size', `${m.width}x${m.height}`],
    ['Model', m.model],
  ];
  if (m.precision) pairs.push(['Precision', m.precision]);
  if (m.strength !== undefined) pairs.push(['Denoising strength', m.strength]);
  if (m.num_images > 1) pairs.push(['Batch size', m.num_images], ['Batch pos', m.index]);
  pairs.push(['Version', `flux-ts ${m.version}`]);
  return `${m.prompt}\n${pairs.map(([k, v]) => `${k}: ${v}`).join(', ')}`;
}

/** The text chunks written into each generated PNG. */
export function pngTextFor(m: GenerationMetadata): Record<string, string> {
  return { [PARAMETERS_KEY]: a1111Parameters(m), [METADATA_KEY]: JSON.stringify(m) };
}

export class MetadataError extends FluxError {
  constructor(message: string) {
    super('BAD_METADATA', message);
    this.name = 'MetadataError';
  }
}

function fromA1111(text: string): Partial<GenerationMetadata> {
  const nl = text.lastIndexOf('\n');
  if (nl < 0) return { prompt: text };
  const prompt = text.slice(0, nl);
  const out: Partial<GenerationMetadata> = { prompt };
  for (const part of text.slice(nl + 1).split(/,\s*(?=[A-Za-z][A-Za-z ]*:)/)) {
    const i = part.indexOf(':');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (k === 'Steps') out.steps = Number(v);
    else if (k === 'Seed') out.seed = /^\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : v;
    else if (k === 'Distilled CFG Scale') out.guidance = Number(v);
    else if (k === 'Size') {
      const m = /^(\d+)x(\d+)$/.exec(v);
      if (m) {
        out.width = Number(m[1]);
        out.height = Number(m[2]);
      }
    } else if (k === 'Model') out.model = v;
    else if (k === 'Denoising strength') out.strength = Number(v);
  }
  return out;
}

/** The JPEG comments written with a JPEG (`encodeJpeg`): the A1111 text, then `flux-ts:` and the JSON. */
export function jpegCommentsFor(m: GenerationMetadata): string[] {
  return [a1111Parameters(m), `${METADATA_KEY}:${JSON.stringify(m)}`];
}

/** A JPEG's comments as the PNG text chunks they stand for. */
function jpegText(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of readJpegComments(bytes)) {
    if (c.startsWith(`${METADATA_KEY}:`)) out[METADATA_KEY] = c.slice(METADATA_KEY.length + 1);
    else out[PARAMETERS_KEY] ??= c;
  }
  return out;
}

/**
 * The generation parameters stored in a PNG (text chunks) or a JPEG (COM segments): the `flux-ts` JSON, else what the
 * A1111 `parameters` text gives. Throws MetadataError when the file has neither.
 */
export function readGenerationMetadata(image: Uint8Array, name = 'image'): Partial<GenerationMetadata> {
  if (!isPng(image) && !isJpeg(image)) throw new MetadataError(`${name} is neither a PNG nor a JPEG file`);
  const text = isPng(image) ? readPngText(image) : jpegText(image);
  const json = text[METADATA_KEY];
  if (json !== undefined) {
    try {
      const v = JSON.parse(json) as unknown;
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Partial<GenerationMetadata>;
    } catch {
      // fall through to the parameters chunk
    }
  }
  const params = text[PARAMETERS_KEY];
  if (params !== undefined) return fromA1111(params);
  throw new MetadataError(`${name} has no generation parameters (no "${METADATA_KEY}" or "${PARAMETERS_KEY}" text)`);
}
