/**
 * `pnpm flux generate` end to end on the tiny fixture model (test/fixtures/pipeline/tiny-flux), run as the user
 * runs it (a child process): output files, --json, PNG and JPEG metadata, --from-metadata round trips (plain,
 * image-to-image, one image of a batch, latents), several seeds, previews, the output checked before any model
 * loads, and the one-line errors (exit 1; usage errors exit 2, as JSON with --json).
 */
import { cp, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath } from '../../../test/harness/fixtures.ts';
import { runFlux } from '../../../test/harness/run-cli.ts';
import { decodeImage, readGenerationMetadata, readPngText } from '../../flux/src/index.ts';

const MODEL = fixturePath('pipeline', 'tiny-flux');

const flux = (args: string[], env: Record<string, string> = {}) => runFlux(args, { env, timeoutMs: 120_000 });

/** stderr without the backend's one informational fallback line. */
const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('flux: using the'));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-generate-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** TensorFlow's own two startup lines (absl, before TF_CPP_MIN_LOG_LEVEL applies; README, Precision), removed. */
function withoutTensorflowBanner(stderr: string): string {
  return stderr.replace(/^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR\n/m, '').replace(/^I\d+ [^\n]*port\.cc:\d+\] oneDNN custom operations are on[^\n]*\n/m, '');
}

describe('pnpm flux generate', () => {
  it('writes a PNG with its parameters and prints one JSON object; --from-metadata reproduces it', async () => {
    const out = join(dir, 'fox.png');
    const r = await flux(['generate', 'a red fox in the snow', '--model', MODEL, '--width', '128', '--height', '256', '--steps', '2', '--seed', '5', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout.trim()) as Record<string, unknown>;
    expect(j).toMatchObject({ seed: 5, width: 128, height: 256, steps: 2, files: [out] });
    expect(typeof j.runtime_ms).toBe('number');
    const png = await readFile(out);
    const img = decodeImage(png);
    expect([img.width, img.height]).toEqual([128, 256]);
    const meta = readGenerationMetadata(png);
    expect(meta).toMatchObject({ prompt: 'a red fox in the snow', seed: 5, steps: 2, width: 128, height: 256, variant: 'schnell' });
    expect(readPngText(png).parameters).toMatch(/^a red fox in the snow\nSteps: 2, .*Seed: 5, Size: 128x256/);

    // the recorded model is used when --model is not given
    expect(meta.model).toBe(MODEL);
    const again = join(dir, 'again.png');
    const r2 = await flux(['generate', '--from-metadata', out, '--out', again]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(Buffer.from(decodeImage(await readFile(again)).data).equals(Buffer.from(img.data))).toBe(true);

    // --latents: the seed-5 noise from `pnpm flux noise` gives the seed-5 image whatever --seed says; the image
    // records the latents (sha256), not a seed it never used, and reproduces only with the same latents
    const noise = join(dir, 'noise.safetensors');
    const rn = await flux(['noise', '--shape', '1,16,32,16', '--seed', '5', '--out', noise]);
    expect(rn.code, rn.stderr).toBe(0);
    const fromNoise = join(dir, 'from-noise.png');
    const r3 = await flux(['generate', 'a red fox in the snow', '--model', MODEL, '--width', '128', '--height', '256', '--steps', '2', '--seed', '77', '--latents', noise, '--out', fromNoise]);
    expect(r3.code, r3.stderr).toBe(0);
    expect(Buffer.from(decodeImage(await readFile(fromNoise)).data).equals(Buffer.from(img.data))).toBe(true);
    const noiseMeta = readGenerationMetadata(await readFile(fromNoise));
    expect(noiseMeta.seed).toBeUndefined();
    expect(noiseMeta).toMatchObject({ latents: 'noise.safetensors', latents_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const refused = await flux(['generate', '--from-metadata', fromNoise, '--out', join(dir, 'never.png')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/made from the latents file noise\.safetensors; pass it again with --latents/);
    const other = join(dir, 'other-noise.safetensors');
    expect((await flux(['noise', '--shape', '1,16,32,16', '--seed', '6', '--out', other])).code).toBe(0);
    const wrong = await flux(['generate', '--from-metadata', fromNoise, '--latents', other, '--out', join(dir, 'never.png')]);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/is not the latents .* was made from/);
    const redo = join(dir, 'redo-noise.png');
    const r4 = await flux(['generate', '--from-metadata', fromNoise, '--latents', noise, '--out', redo]);
    expect(r4.code, r4.stderr).toBe(0);
    expect(Buffer.from(decodeImage(await readFile(redo)).data).equals(Buffer.from(img.data))).toBe(true);
    expect(existsSync(join(dir, 'never.png'))).toBe(false);
  });

  it('several seeds (the seed in each name), aliases, --prompt-file, previews after every N steps, missing folders made', async () => {
    const promptFile = join(dir, 'prompt.txt');
    await writeFile(promptFile, 'a lighthouse at dusk\n');
    const out = join(dir, 'new', 'deeper', 'light.png');
    const preview = join(dir, 'previews', 'light.png');
    const r = await flux(['generate', '--prompt-file', promptFile, '-m', MODEL, '-W', '128', '-H', '128', '--steps', '3', '-s', '3', '4', '-o', out, '--preview', preview, '--preview-every', '2', '--json', '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(withoutTensorflowBanner(r.stderr)).toBe(''); // --quiet: nothing of ours
    const j = JSON.parse(r.stdout) as { seeds: number[]; files: string[]; runs: { seed: number }[] };
    expect(j.seeds).toEqual([3, 4]);
    expect(j.files).toEqual([join(dir, 'new', 'deeper', 'light-3.png'), join(dir, 'new', 'deeper', 'light-4.png')]);
    for (const [i, f] of j.files.entries()) expect(readGenerationMetadata(await readFile(f))).toMatchObject({ prompt: 'a lighthouse at dusk', seed: j.seeds[i] });
    // a preview after step 2 of 3 (proj: the latent resolution, 16 x 16 for 128 x 128)
    for (const seed of [3, 4]) {
      const p = decodeImage(await readFile(join(dir, 'previews', `light-${seed}.png`)));
      expect([p.width, p.height]).toEqual([16, 16]);
    }
  });

  it('image-to-image with --image-path/--image-strength to a JPEG (quality, parameters inside); --from-metadata makes the same bytes', async () => {
    const input = join(dir, 'fox.png');
    expect((await flux(['generate', 'a fox', '-m', MODEL, '-W', '128', '-H', '128', '--steps', '1', '--seed', '1', '-o', input, '-q'])).code).toBe(0);
    const jpg = join(dir, 'fox-edit.jpg');
    const r = await flux(['generate', 'a fox, oil painting', '-m', MODEL, '-W', '128', '-H', '128', '--steps', '4', '--seed', '2', '--image-path', input, '--image-strength', '0.5', '-o', jpg, '--jpeg-quality', '80', '-q']);
    expect(r.code, r.stderr).toBe(0);
    const bytes = await readFile(jpg);
    expect([bytes[0], bytes[1]]).toEqual([0xff, 0xd8]);
    expect(readGenerationMetadata(bytes)).toMatchObject({ prompt: 'a fox, oil painting', strength: 0.5, image: 'fox.png', seed: 2 });
    const needsImage = await flux(['generate', '--from-metadata', jpg, '-o', join(dir, 'x.jpg')]);
    expect(needsImage.code).toBe(2);
    expect(needsImage.stderr).toMatch(/made from an input image \(fox\.png\); pass it again with --image/);
    const again = join(dir, 'fox-edit-again.jpg');
    const r2 = await flux(['generate', '--from-metadata', jpg, '--image', input, '-o', again, '--jpeg-quality', '80', '-q']);
    expect(r2.code, r2.stderr).toBe(0);
    expect((await readFile(again)).equals(bytes)).toBe(true);
  });

  it('one image of a batch is made again alone from its metadata (its recorded index)', async () => {
    const out = join(dir, 'batch.png');
    const r = await flux(['generate', 'three boats', '-m', MODEL, '-W', '128', '-H', '128', '--steps', '2', '--seed', '11', '-n', '3', '-o', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toEqual([0, 1, 2].map((i) => join(dir, `batch-${i}.png`)));
    const second = await readFile(join(dir, 'batch-1.png'));
    expect(readGenerationMetadata(second)).toMatchObject({ num_images: 3, index: 1, seed: 11 });
    const alone = join(dir, 'batch-alone.png');
    const r2 = await flux(['generate', '--from-metadata', join(dir, 'batch-1.png'), '-o', alone, '--json', '-q']);
    expect(r2.code, r2.stderr).toBe(0);
    expect(JSON.parse(r2.stdout)).toMatchObject({ num_images: 3, batch_index: 1, files: [alone] });
    const a = decodeImage(await readFile(alone)).data;
    const b = decodeImage(second).data;
    let off = 0;
    for (let i = 0; i < a.length; i++) off = Math.max(off, Math.abs(a[i]! - b[i]!));
    expect(off).toBeLessThanOrEqual(1); // the batch's matmuls may round one step differently
    expect(readGenerationMetadata(await readFile(alone))).toMatchObject({ num_images: 3, index: 1 });
  });

  it('a bad --out fails before the text stage: one line, nothing loaded', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    // under a file; an unknown format; a folder name the file system refuses (root may write anywhere else)
    for (const out of [join(file, 'out.png'), join(dir, 'x.webp'), join(dir, 'n'.repeat(300), 'x.png')]) {
      const r = await flux(['generate', 'a cat', '-m', MODEL, '-W', '128', '-H', '128', '--out', out]);
      expect(r.code, out).toBeGreaterThan(0);
      const lines = errorLines(r.stderr);
      expect(lines, out).toHaveLength(1);
      expect(lines[0]).toMatch(/^error: --out/);
      expect(r.stderr).not.toMatch(/^(text|model):/m);
    }
  });

  it('usage errors exit 2 and, with --json, are one JSON object on stdout', async () => {
    const r = await flux(['generate', 'a cat', '--steps', '0', '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({ error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^--steps must be an integer from 1 to 512, got "0"/) } });
    const plain = await flux(['generate', 'a cat', '-W', '1350']);
    expect(plain.code).toBe(2);
    expect(plain.stderr).toMatch(/^error: -W must be a multiple of 16 pixels, got 1350 \(nearest: 1344 or 1360\)/);
  });

  it('no model given and none found: exit 1, one line saying where it looked and how to get one', async () => {
    const r = await flux(['generate', 'a cat'], { HF_HOME: join(dir, 'no-hf'), HF_HUB_CACHE: '', HUGGINGFACE_HUB_CACHE: '', FLUX_MODEL: '' });
    expect(r.code).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: no model given and none found \(looked in .*no-hf.*\).*flux-ts download/);
  });

  it('a missing component: one line naming it', async () => {
    const m = join(dir, 'no-vae');
    await cp(MODEL, m, { recursive: true });
    await rm(join(m, 'vae'), { recursive: true });
    const r = await flux(['generate', 'a cat', '--model', m, '--width', '128', '--height', '128']);
    expect(r.code).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: .*component vae\/ is missing/);
  });

  it('a corrupt component: one line naming the file, never a stack trace', async () => {
    const m = join(dir, 'bad-transformer');
    await cp(MODEL, m, { recursive: true });
    await truncate(join(m, 'transformer', 'diffusion_pytorch_model.safetensors'), 5000);
    const r = await flux(['generate', 'a cat', '--model', m, '--width', '128', '--height', '128']);
    expect(r.code).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^error: .*transformer.*diffusion_pytorch_model\.safetensors.*truncated/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

});
