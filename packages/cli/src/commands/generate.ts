/**
 * `flux-ts generate "a prompt" [options]`: parse, check where the images go, find the model, run the pipeline once
 * per seed, write PNG or JPEG files that carry their parameters (and previews while it runs). Progress goes to
 * stderr (progress.ts); stdout gets the file names, or one JSON object with `--json`.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { FluxError, IMAGE_SIDE, imageSideProblem, RANDOM_SEED_MAX } from '@flux-ts/core';
import {
  encodeJpeg,
  FluxPipeline,
  initBackend,
  jpegCommentsFor,
  locateModel,
  readGenerationMetadata,
  SafetensorsFile,
  type GenerateResult,
  type GenerationMetadata,
  type ModelLocation,
  type StepPreview,
} from '@flux-ts/flux';
import { flagOf, usageError, type CommandSpec, type ParsedArgs } from '../command.ts';
import { flag, MODEL_OPTIONS, precisionOption, RUNTIME_OPTIONS, str, type CliResidency } from '../options.ts';
import { checkTarget, outputPath, planOutput, prepareOutput, writeOutput, type OutputPlan } from '../output.ts';
import { fmtMs, ProgressDisplay } from '../progress.ts';
import { seedsOption } from '../seeds.ts';

export const command: CommandSpec = {
  name: 'generate',
  usage: '[PROMPT] [options]',
  description: 'Generate images with FLUX.1 [schnell] (or dev) and write PNG or JPEG files that carry the generation parameters.',
  positionals: { max: 1, name: 'prompt argument' },
  groups: [
    {
      title: 'prompt',
      options: [
        { name: 'prompt', short: 'p', type: 'string', arg: 'TEXT', help: 'the prompt (or give it as the first argument)' },
        { name: 'prompt-file', type: 'string', arg: 'FILE', help: 'read the prompt from a text file (UTF-8; surrounding whitespace dropped)' },
        { name: 'max-sequence-length', type: 'integer', arg: 'N', min: 1, max: 512, help: 'T5 tokens (default: schnell 256, dev 512)' },
      ],
    },
    {
      title: 'image',
      options: [
        { name: 'width', short: 'W', type: 'integer', arg: 'W', help: `image width in pixels: any multiple of ${IMAGE_SIDE.multiple} from ${IMAGE_SIDE.min} to ${IMAGE_SIDE.max} (default 512)` },
        { name: 'height', short: 'H', type: 'integer', arg: 'H', help: `image height, likewise (default 512); e.g. 1344x768, 1216x832` },
        { name: 'steps', type: 'integer', arg: 'N', min: 1, max: 512, help: "denoising steps (default: the model's, schnell 4, dev 50)" },
        { name: 'seed', short: 's', type: 'string', arg: 'S', variadic: true, more: /^[+-]?(\d+|0x[0-9a-f]+)$/i, help: 'integer seed, or several (`--seed 1 2 3`: one run each, the seed in each file name); default random; negative seeds wrap modulo 2^64 as in torch' },
        { name: 'seeds', type: 'string', arg: 'A,B,C', help: 'several seeds as one comma-separated list' },
        { name: 'guidance', short: 'g', type: 'number', arg: 'G', min: 0, max: 100, help: 'distilled guidance (dev only; no effect on schnell; default 3.5)' },
        { name: 'num-images', short: 'n', type: 'integer', arg: 'K', min: 1, max: 4, help: 'images from one prompt and seed, 1 to 4 (one noise draw for the batch; default 1)' },
        { name: 'batch-index', type: 'integer', arg: 'I', min: 0, help: 'make only image I (0-based) of the --num-images batch, alone' },
      ],
    },
    {
      title: 'image-to-image and latents',
      options: [
        { name: 'image', aliases: ['image-path'], short: 'i', type: 'string', arg: 'IN.png', help: 'input image (PNG or JPEG), resized to the output size' },
        { name: 'strength', aliases: ['image-strength'], type: 'number', arg: 'X', min: 0, max: 1, help: 'how much of the input image is replaced, 0 to 1 (default 0.8)' },
        { name: 'latents', type: 'string', arg: 'FILE', help: 'initial noise from a safetensors file (tensor "noise", e.g. from `flux-ts noise`) instead of the seed\'s' },
        { name: 'from-metadata', type: 'string', arg: 'OLD.png', help: "make an image again from the parameters stored in a PNG or JPEG this command wrote, its model included (flags given win)" },
      ],
    },
    {
      title: 'output',
      options: [
        { name: 'output', aliases: ['out'], short: 'o', type: 'string', arg: 'FILE', help: 'output file, .png or .jpg/.jpeg (default flux-<seed>.png); missing folders are created; a folder (ending in /) takes the default names; with several seeds or images the seed and index are appended' },
        { name: 'jpeg-quality', type: 'integer', arg: 'Q', min: 1, max: 100, help: 'JPEG quality for .jpg output (default 90)' },
        { name: 'preview', type: 'string', arg: 'PATH', help: 'write the current estimate of the image to PATH (.png) while denoising' },
        { name: 'preview-every', type: 'integer', arg: 'N', min: 1, help: 'a preview after every N steps (default 1)' },
        { name: 'preview-mode', type: 'string', arg: 'M', choices: ['proj', 'vae'], help: 'proj (default): a linear map of the latents, W/8 x H/8, milliseconds; vae: a full decode, as long as the final one' },
        { name: 'json', type: 'boolean', help: 'print one JSON object (seed, files, per-stage timings, ...); errors too' },
        { name: 'quiet', short: 'q', type: 'boolean', help: 'no progress output' },
      ],
    },
    MODEL_OPTIONS,
    RUNTIME_OPTIONS,
  ],
  run,
};

async function readLatents(path: string, flagName: string): Promise<{ data: Float32Array; shape: number[] }> {
  const f = await SafetensorsFile.open(path);
  try {
    const info = f.tensors.get('noise');
    if (!info) {
      throw new FluxError('INVALID_ARGUMENT', `${flagName} ${path} has no tensor "noise" (it has: ${[...f.tensors.keys()].slice(0, 5).join(', ') || 'none'}); make one with flux-ts noise`);
    }
    return { data: await f.readFloat32('noise'), shape: [...info.shape] };
  } finally {
    await f.close();
  }
}

async function readInput(path: string, flagName: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${flagName}: cannot read ${path} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

/** An option's value, else the one recorded in the metadata, else undefined. */
function pick<T>(args: ParsedArgs, name: string, fromMeta: T | undefined): T | undefined {
  return (args.values[name] as T | undefined) ?? fromMeta;
}

/** The model named in old metadata, as `--model` would name it (a path made absolute, or a repo id). */
function recordedModelName(args: ParsedArgs, loc: ModelLocation): string {
  const given = str(args, 'model') ?? process.env.FLUX_MODEL;
  return given !== undefined && existsSync(given) ? resolve(given) : loc.name;
}

async function run(args: ParsedArgs): Promise<number> {
  const json = flag(args, 'json');
  const quiet = flag(args, 'quiet');

  // 1. What to make: the old image's parameters first, then the flags.
  let meta: Partial<GenerationMetadata> = {};
  const fromMeta = str(args, 'from-metadata');
  if (fromMeta !== undefined) meta = readGenerationMetadata(await readInput(fromMeta, flagOf(args, 'from-metadata')), fromMeta);

  let prompt: string | undefined = args.positionals[0];
  for (const [name, v] of [['prompt', str(args, 'prompt')], ['prompt-file', str(args, 'prompt-file')]] as const) {
    if (v === undefined) continue;
    if (prompt !== undefined) throw usageError('generate', `give the prompt once: as an argument, with --prompt or with --prompt-file`);
    prompt = name === 'prompt' ? v : (await readFile(v).catch((e: NodeJS.ErrnoException) => {
      throw new FluxError('INVALID_ARGUMENT', `${flagOf(args, name)}: cannot read ${v} (${e.code ?? e.message})`);
    })).toString('utf8').trim();
  }
  prompt ??= meta.prompt;
  if (prompt === undefined) throw usageError('generate', 'no prompt: flux-ts generate "a photo of a cat" [options]');

  const width = pick<number>(args, 'width', meta.width) ?? 512;
  const height = pick<number>(args, 'height', meta.height) ?? 512;
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    const problem = imageSideProblem(v);
    if (problem) throw usageError('generate', `${args.values[name] !== undefined ? flagOf(args, name) : `${name} from ${fromMeta}`} ${problem}`);
  }
  const imagePath = str(args, 'image');
  if (fromMeta && meta.image && !imagePath) {
    throw usageError('generate', `${fromMeta} was made from an input image (${meta.image}); pass it again with --image`);
  }
  const latentsPath = str(args, 'latents');
  if (fromMeta && meta.latents && !latentsPath) {
    throw usageError('generate', `${fromMeta} was made from the latents file ${meta.latents}; pass it again with --latents (its sha256 is checked)`);
  }

  let seeds = seedsOption(args, 'generate');
  if (seeds === undefined && meta.seed !== undefined) seeds = [BigInt(meta.seed)];
  if (latentsPath && seeds !== undefined && seeds.length > 1 && !imagePath) {
    throw usageError('generate', 'several seeds with --latents make the same image: the latents replace the noise the seed draws');
  }
  seeds ??= [BigInt(Math.floor(Math.random() * (RANDOM_SEED_MAX + 1)))];
  const numImages = pick<number>(args, 'num-images', meta.num_images) ?? 1;
  // One image of a batch made again: the recorded index, unless the flags ask for another batch.
  let batchIndex = args.values['batch-index'] as number | undefined;
  if (batchIndex === undefined && fromMeta && args.values['num-images'] === undefined && (meta.num_images ?? 1) > 1) batchIndex = meta.index;
  if (batchIndex !== undefined && batchIndex >= numImages) {
    throw usageError('generate', `${flagOf(args, 'batch-index')} ${batchIndex} is not an image of a batch of ${numImages} (0 to ${numImages - 1})`);
  }

  // 2. Where the images go: checked (and folders made) before anything loads.
  const outFlag = flagOf(args, 'output');
  const plan: OutputPlan = planOutput(str(args, 'output'), outFlag);
  const jpegQuality = (args.values['jpeg-quality'] as number | undefined) ?? 90;
  if (args.values['jpeg-quality'] !== undefined && plan.format !== 'jpeg') throw usageError('generate', `${flagOf(args, 'jpeg-quality')} is for JPEG output (--out x.jpg)`);
  const counts = { seeds: seeds.length, batch: batchIndex === undefined ? numImages : 1 };
  const names = seeds.map((s) => Array.from({ length: counts.batch }, (_, i) => outputPath(plan, s.toString(), batchIndex ?? i, { ...counts, batch: batchIndex === undefined ? numImages : 1 })));
  prepareOutput(plan, outFlag);
  for (const f of names.flat()) checkTarget(f, outFlag);
  const previewPath = str(args, 'preview');
  let previewPlan: OutputPlan | undefined;
  if (previewPath !== undefined) {
    previewPlan = planOutput(previewPath, '--preview');
    if (previewPlan.format !== 'png' || previewPlan.stem === null) throw usageError('generate', `--preview ${previewPath}: name a .png file`);
    prepareOutput(previewPlan, '--preview');
  } else if (args.values['preview-every'] !== undefined || args.values['preview-mode'] !== undefined) {
    throw usageError('generate', '--preview-every and --preview-mode need --preview PATH');
  }

  // 3. The model: the flags', else the one the old image records, else the default.
  const modelGiven = str(args, 'model') ?? (fromMeta && meta.model && !process.env.FLUX_MODEL ? meta.model : undefined);
  let location: ModelLocation;
  try {
    location = locateModel({ model: modelGiven, vae: str(args, 'vae'), textEncoders: str(args, 'text-encoders') });
  } catch (e) {
    if (e instanceof FluxError && modelGiven !== undefined && str(args, 'model') === undefined) {
      throw new FluxError(e.code, `${fromMeta} was made with the model ${modelGiven}, which is not found here (${e.message}); pass --model PATH`);
    }
    throw e;
  }
  const guidance = pick<number>(args, 'guidance', location.variant === 'dev' ? meta.guidance : undefined);
  const steps = pick<number>(args, 'steps', meta.steps);
  const strength = pick<number>(args, 'strength', meta.strength);
  const maxSequenceLength = pick<number>(args, 'max-sequence-length', meta.max_sequence_length);
  const image = imagePath ? await readInput(imagePath, flagOf(args, 'image')) : undefined;
  const latents = latentsPath ? await readLatents(latentsPath, flagOf(args, 'latents')) : undefined;
  if (latents && fromMeta && meta.latents) {
    const sha = createHash('sha256').update(new Uint8Array(latents.data.buffer, latents.data.byteOffset, latents.data.byteLength)).digest('hex');
    if (meta.latents_sha256 === undefined) throw usageError('generate', `${fromMeta} does not record which latents it was made from (an older file): it cannot be reproduced`);
    if (sha !== meta.latents_sha256) throw usageError('generate', `${latentsPath} is not the latents ${fromMeta} was made from (sha256 ${sha.slice(0, 12)}..., recorded ${meta.latents_sha256.slice(0, 12)}...)`);
  }

  // 4. Every component readable? Then backend, pipeline.
  const residency = (str(args, 'residency') ?? 'auto') as CliResidency;
  const pipe = new FluxPipeline(location, { transformer: residency, keepLoaded: seeds.length > 1, precision: precisionOption(args) });
  await pipe.verify();
  const backend = await initBackend({ backend: str(args, 'backend'), quiet: json || quiet });
  const display = quiet ? null : new ProgressDisplay({ stream: process.stderr, tty: process.stderr.isTTY === true && !json });
  const modelName = recordedModelName(args, location);
  const previewMode = (str(args, 'preview-mode') ?? 'proj') as 'proj' | 'vae';
  if (!json && !quiet) {
    process.stderr.write(`model: ${location.name} (${location.variant}), backend: ${backend.name} ${pipe.precision}, ${width}x${height}, ${steps ?? pipe.defaults.num_inference_steps} steps, seed${seeds.length > 1 ? 's' : ''} ${seeds.join(', ')}\n`);
  }

  const t0 = performance.now();
  const runs: { seed: string; files: string[]; result: GenerateResult }[] = [];
  const rescued: string[] = [];
  try {
    for (const [k, seed] of seeds.entries()) {
      const result = await pipe.generate({
        prompt,
        width,
        height,
        seed,
        numImages,
        modelName,
        ...(steps !== undefined ? { steps } : {}),
        ...(guidance !== undefined ? { guidance } : {}),
        ...(batchIndex !== undefined ? { batchIndex } : {}),
        ...(maxSequenceLength !== undefined ? { maxSequenceLength } : {}),
        ...(image ? { image, strength: strength ?? 0.8, imageName: basename(imagePath!) } : {}),
        ...(latents ? { latents, latentsName: basename(latentsPath!) } : {}),
        ...(display ? {
          onProgress: (e) => display.onProgress(e),
          onStage: (s, ev, ms) => display.onStage(s, ev, ms),
          onStep: (info) => display.onStep(info.step, info.total, info.stepMs, info.elapsedMs),
        } : {}),
        ...(previewPlan ? {
          preview: {
            mode: previewMode,
            every: (args.values['preview-every'] as number | undefined) ?? 1,
            onPreview: (p: StepPreview) => {
              for (const im of p.images) {
                const file = outputPath(previewPlan!, seed.toString(), im.index, counts);
                const w = writeOutput(file, im.png);
                if (w.error) throw new FluxError('OUTPUT_UNWRITABLE', `--preview: ${w.error}`);
                display?.notice(`preview of step ${p.step} -> ${file}`);
              }
            },
          },
        } : {}),
      });
      const files: string[] = [];
      for (const [i, im] of result.images.entries()) {
        const bytes = plan.format === 'jpeg'
          ? encodeJpeg({ width: im.width, height: im.height, data: im.rgb }, jpegQuality, jpegCommentsFor(im.metadata))
          : im.png;
        const w = writeOutput(names[k]![i]!, bytes);
        if (w.error) {
          rescued.push(`${w.error}; the image was saved to ${w.path} instead`);
          display?.line(`error: ${rescued[rescued.length - 1]}`);
        }
        files.push(w.path);
      }
      runs.push({ seed: result.seed.toString(), files, result });
    }
  } finally {
    display?.end();
    await pipe.dispose();
  }
  const runtimeMs = Math.round(performance.now() - t0);
  const files = runs.flatMap((r) => r.files);
  if (json) {
    const first = runs[0]!.result;
    const timings = (r: GenerateResult) => ({
      load: Math.round(r.timings.loadMs),
      text: Math.round(r.timings.textMs),
      image_encode: Math.round(r.timings.imageEncodeMs),
      denoise: Math.round(r.timings.denoiseMs),
      preview: Math.round(r.timings.previewMs),
      decode: Math.round(r.timings.decodeMs),
      steps: r.timings.stepMs.map((x) => Math.round(x)),
    });
    console.log(JSON.stringify({
      ...(first.seedUsed ? { seed: first.seed } : { seed: null }),
      ...(runs.length > 1 ? { seeds: runs.map((r) => r.result.seed) } : {}),
      width: first.width,
      height: first.height,
      steps: first.steps,
      steps_run: first.stepsRun,
      guidance: first.guidance,
      ...(first.strength !== undefined ? { strength: first.strength } : {}),
      num_images: numImages,
      ...(batchIndex !== undefined ? { batch_index: batchIndex } : {}),
      max_sequence_length: first.maxSequenceLength,
      model: first.model,
      variant: first.variant,
      backend: backend.name,
      precision: pipe.precision,
      runtime_ms: runtimeMs,
      timings_ms: timings(first),
      ...(runs.length > 1 ? { runs: runs.map((r) => ({ seed: r.result.seed, files: r.files, timings_ms: timings(r.result) })) } : {}),
      files,
      ...(rescued.length ? { errors: rescued } : {}),
    }));
  } else {
    if (!quiet) process.stderr.write(`done in ${fmtMs(runtimeMs)}\n`);
    for (const f of files) console.log(f);
  }
  return rescued.length ? 1 : 0;
}

