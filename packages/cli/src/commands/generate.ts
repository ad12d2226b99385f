/**
 * `pnpm flux generate "a prompt" [options]`: parse, find the model, run the pipeline, write PNGs.
 * Progress goes to stderr (a bar on a terminal, plain lines otherwise); `--json` prints one JSON object on stdout.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';
import { FluxError, parseInferenceRequest, RANDOM_SEED_MAX } from '@flux-ts/core';
import { initBackend, SafetensorsFile } from '@flux-ts/flux';
import {
  FluxPipeline,
  locateModel,
  readGenerationMetadata,
  type GenerationMetadata,
  type StepInfo,
} from '@flux-ts/flux';

const USAGE = `usage: pnpm flux generate [PROMPT] [options]

Generate images with FLUX.1 [schnell] (or dev) and write PNGs that carry the generation parameters.

options:
  --prompt TEXT          the prompt (or give it as the first argument)
  --model PATH           a diffusers FLUX.1 folder, a BFL flux1-*.safetensors file, a Hugging Face cache
                         snapshot or a repo id in the cache (default: $FLUX_MODEL, else the cached
                         black-forest-labs/FLUX.1-schnell; get it with \`pnpm flux download\`)
  --vae FILE             BFL files: the autoencoder (default: ae.safetensors next to the model file)
  --text-encoders DIR    BFL files: a diffusers folder with the text encoders and tokenizers
  --width W, --height H  image size in pixels: 128, 256, 384, 448, 512, ..., 1024 (default 512)
  --steps N              denoising steps (default: the model's, schnell 4, dev 50)
  --seed S               integer seed (default: random); the same seed gives the same image
  --guidance G           distilled guidance (dev only; no effect on schnell; default 3.5)
  --num-images K         images from one prompt, 1 to 4 (default 1)
  --image IN.png         image-to-image input (PNG or JPEG), resized to the output size
  --strength X           image-to-image strength from 0 to 1 (default 0.8)
  --max-sequence-length N  T5 tokens (default: schnell 256, dev 512)
  --latents FILE         initial noise from a safetensors file (tensor "noise", e.g. from \`pnpm flux noise\`)
  --from-metadata OLD.png  reuse the parameters stored in a PNG made by this command (flags given win)
  --backend B            auto (default: $FLUX_BACKEND, else auto), tensorflow, wasm or cpu
  --residency R          transformer weights: auto (default: resident on a GPU, else streamed per block),
                         streamed, or resident (faster, needs ~48 GB for FLUX.1 in float32)
  --out OUT.png          output file (default flux-<seed>.png; with several images OUT-<i>.png)
  --json                 print one JSON object (seed, width, height, steps, runtime_ms, files, ...)
  -h, --help             show this help`;

type Values = Record<string, string | boolean | undefined>;

function parse(argv: string[]): { values: Values; positionals: string[] } {
  try {
    return parseArgs({
      args: argv,
      options: {
        prompt: { type: 'string', short: 'p' },
        model: { type: 'string', short: 'm' },
        vae: { type: 'string' },
        'text-encoders': { type: 'string' },
        width: { type: 'string', short: 'W' },
        height: { type: 'string', short: 'H' },
        steps: { type: 'string', short: 's' },
        seed: { type: 'string' },
        guidance: { type: 'string', short: 'g' },
        'num-images': { type: 'string', short: 'n' },
        image: { type: 'string', short: 'i' },
        strength: { type: 'string' },
        'max-sequence-length': { type: 'string' },
        latents: { type: 'string' },
        'from-metadata': { type: 'string' },
        backend: { type: 'string' },
        residency: { type: 'string' },
        out: { type: 'string', short: 'o' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${(e as Error).message}; see pnpm flux generate --help`);
  }
}

/** A numeric flag: the number, or the raw text (the request validator then names the bad field). */
function numberFlag(v: string | boolean | undefined): number | string | undefined {
  if (typeof v !== 'string') return undefined;
  return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v.trim()) ? Number(v) : v;
}

async function readLatents(path: string): Promise<{ data: Float32Array; shape: number[] }> {
  const f = await SafetensorsFile.open(path);
  try {
    const info = f.tensors.get('noise');
    if (!info) {
      throw new FluxError('INVALID_ARGUMENT', `--latents ${path} has no tensor "noise" (it has: ${[...f.tensors.keys()].slice(0, 5).join(', ') || 'none'}); make one with pnpm flux noise`);
    }
    return { data: await f.readFloat32('noise'), shape: [...info.shape] };
  } finally {
    await f.close();
  }
}

function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function progress(json: boolean) {
  const tty = process.stderr.isTTY === true && !json;
  let lastWidth = 0;
  return {
    stage(stage: string, event: 'start' | 'end', ms?: number) {
      if (event === 'end' && stage !== 'denoise') process.stderr.write(`${stage}: ${fmtMs(ms ?? 0)}\n`);
      if (event === 'start' && stage === 'denoise' && tty) lastWidth = 0;
    },
    step(info: StepInfo) {
      const perStep = info.elapsedMs / info.step;
      const eta = perStep * (info.total - info.step);
      if (tty) {
        const cols = 24;
        const done = Math.round((cols * info.step) / info.total);
        const line = `denoise [${'#'.repeat(done)}${'.'.repeat(cols - done)}] ${info.step}/${info.total}  ${fmtMs(info.stepMs)}/step  ETA ${fmtMs(eta)}`;
        process.stderr.write(`\r${line.padEnd(lastWidth)}`);
        lastWidth = line.length;
        if (info.step === info.total) process.stderr.write(`\rdenoise: ${info.total} steps in ${fmtMs(info.elapsedMs)}`.padEnd(lastWidth) + '\n');
      } else {
        process.stderr.write(`step ${info.step}/${info.total}: ${fmtMs(info.stepMs)} (eta ${fmtMs(eta)})\n`);
      }
    },
  };
}

function outputNames(out: string | undefined, seed: number | string, n: number): string[] {
  const base = out ?? `flux-${seed}.png`;
  if (n === 1) return [base];
  const ext = extname(base) || '.png';
  const stem = extname(base) ? base.slice(0, -ext.length) : base;
  return Array.from({ length: n }, (_, i) => `${stem}-${i}${ext}`);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv);
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length > 1) {
    throw new FluxError('INVALID_ARGUMENT', `expected one prompt argument, got ${positionals.length} (quote the prompt); see pnpm flux generate --help`);
  }
  if (positionals.length === 1 && typeof values.prompt === 'string') {
    throw new FluxError('INVALID_ARGUMENT', 'give the prompt either as an argument or with --prompt, not both');
  }

  let meta: Partial<GenerationMetadata> = {};
  if (typeof values['from-metadata'] === 'string') {
    const path = values['from-metadata'];
    let bytes: Uint8Array;
    try {
      bytes = await readFile(path);
    } catch (e) {
      throw new FluxError('INVALID_ARGUMENT', `--from-metadata: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    meta = readGenerationMetadata(bytes, path);
  }

  const prompt = (positionals[0] ?? values.prompt ?? meta.prompt) as string | undefined;
  if (prompt === undefined) throw new FluxError('INVALID_ARGUMENT', 'no prompt: pnpm flux generate "a photo of a cat" [options] (see --help)');

  // 1. The model first: a missing model is reported before any backend starts.
  const location = locateModel({
    model: values.model as string | undefined,
    vae: values.vae as string | undefined,
    textEncoders: values['text-encoders'] as string | undefined,
  });

  // 2. The request, with core's rules and the model's defaults.
  const pick = (flag: string, fromMeta: unknown) => numberFlag(values[flag]) ?? fromMeta;
  const body: Record<string, unknown> = { prompt };
  const fields: [string, string, unknown][] = [
    ['width', 'width', meta.width],
    ['height', 'height', meta.height],
    ['num_inference_steps', 'steps', meta.steps],
    ['guidance_scale', 'guidance', location.variant === 'dev' ? meta.guidance : undefined],
    ['seed', 'seed', typeof meta.seed === 'number' ? meta.seed : undefined],
    ['num_images', 'num-images', meta.num_images],
    ['strength', 'strength', meta.strength],
  ];
  for (const [field, flag, m] of fields) {
    const v = pick(flag, m);
    if (v !== undefined) body[field] = v;
  }
  const req = parseInferenceRequest(body, { defaults: location.variant, randomSeed: () => Math.floor(Math.random() * (RANDOM_SEED_MAX + 1)) });
  const maxSeqFlag = numberFlag(values['max-sequence-length']);
  if (maxSeqFlag !== undefined && (typeof maxSeqFlag !== 'number' || !Number.isInteger(maxSeqFlag) || maxSeqFlag < 1 || maxSeqFlag > 512)) {
    throw new FluxError('INVALID_ARGUMENT', `--max-sequence-length must be an integer from 1 to 512, got ${String(values['max-sequence-length'])}`);
  }
  const maxSequenceLength = (maxSeqFlag as number | undefined) ?? meta.max_sequence_length;
  const imagePath = values.image as string | undefined;
  if (values['from-metadata'] && meta.image && !imagePath) {
    throw new FluxError('INVALID_ARGUMENT', `${values['from-metadata']} was made from an input image (${meta.image}); pass it again with --image`);
  }
  let image: Uint8Array | undefined;
  if (imagePath) {
    try {
      image = await readFile(imagePath);
    } catch (e) {
      throw new FluxError('INVALID_ARGUMENT', `--image: cannot read ${imagePath} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
  }
  const latentsPath = values.latents as string | undefined;
  const latents = latentsPath ? await readLatents(latentsPath) : undefined;

  // 3. Every component readable? Then backend, pipeline.
  const residency = (values.residency as string | undefined) ?? 'auto';
  if (!['auto', 'streamed', 'resident'].includes(residency)) {
    throw new FluxError('INVALID_ARGUMENT', `--residency must be auto, streamed or resident, got ${residency}`);
  }
  const pipe = new FluxPipeline(location, { transformer: residency as 'auto' | 'streamed' | 'resident' });
  await pipe.verify();
  const backend = await initBackend({ backend: values.backend as string | undefined, quiet: values.json === true });
  const json = values.json === true;
  const p = progress(json);
  if (!json) process.stderr.write(`model: ${location.name} (${location.variant}), backend: ${backend.name}, seed ${req.seed}, ${req.width}x${req.height}, ${req.num_inference_steps} steps\n`);
  const t0 = performance.now();
  const res = await pipe.generate({
    prompt: req.prompt,
    width: req.width,
    height: req.height,
    steps: req.num_inference_steps,
    seed: req.seed,
    guidance: req.guidance_scale,
    numImages: req.num_images,
    ...(maxSequenceLength !== undefined ? { maxSequenceLength } : {}),
    ...(image ? { image, strength: req.strength, imageName: basename(imagePath!) } : {}),
    ...(latents ? { latents, latentsName: basename(latentsPath!) } : {}),
    onStage: (s, e, ms) => p.stage(s, e, ms),
    onStep: (info) => p.step(info),
  });
  await pipe.dispose();

  const files = outputNames(values.out as string | undefined, res.seed, res.images.length);
  for (const [i, im] of res.images.entries()) await writeFile(files[i]!, im.png);
  const runtimeMs = Math.round(performance.now() - t0);
  if (json) {
    console.log(JSON.stringify({
      seed: res.seed,
      width: res.width,
      height: res.height,
      steps: res.steps,
      steps_run: res.stepsRun,
      guidance: res.guidance,
      ...(res.strength !== undefined ? { strength: res.strength } : {}),
      num_images: res.images.length,
      max_sequence_length: res.maxSequenceLength,
      model: res.model,
      variant: res.variant,
      backend: backend.name,
      runtime_ms: runtimeMs,
      timings_ms: {
        text: Math.round(res.timings.textMs),
        image_encode: Math.round(res.timings.imageEncodeMs),
        denoise: Math.round(res.timings.denoiseMs),
        decode: Math.round(res.timings.decodeMs),
        steps: res.timings.stepMs.map((x) => Math.round(x)),
      },
      files,
    }));
  } else {
    process.stderr.write(`done in ${fmtMs(runtimeMs)}\n`);
    for (const f of files) console.log(f);
  }
  return 0;
}
