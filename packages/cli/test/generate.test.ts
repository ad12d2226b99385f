/**
 * `pnpm flux generate` end to end on the tiny fixture model (test/fixtures/pipeline/tiny-flux), run as the user
 * runs it (a child process): output files, --json, PNG metadata, --from-metadata, --latents, and the one-line
 * errors for a missing model, a missing component and a corrupt one.
 */
import { cp, mkdtemp, readFile, rm, truncate } from 'node:fs/promises';
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

    const again = join(dir, 'again.png');
    const r2 = await flux(['generate', '--from-metadata', out, '--model', MODEL, '--out', again]);
    expect(r2.code, r2.stderr).toBe(0);
    expect(Buffer.from(decodeImage(await readFile(again)).data).equals(Buffer.from(img.data))).toBe(true);

    // --latents: the seed-5 noise from `pnpm flux noise` gives the seed-5 image whatever --seed says
    const noise = join(dir, 'noise.safetensors');
    const rn = await flux(['noise', '--shape', '1,16,32,16', '--seed', '5', '--out', noise]);
    expect(rn.code, rn.stderr).toBe(0);
    const fromNoise = join(dir, 'from-noise.png');
    const r3 = await flux(['generate', 'a red fox in the snow', '--model', MODEL, '--width', '128', '--height', '256', '--steps', '2', '--seed', '77', '--latents', noise, '--out', fromNoise]);
    expect(r3.code, r3.stderr).toBe(0);
    expect(Buffer.from(decodeImage(await readFile(fromNoise)).data).equals(Buffer.from(img.data))).toBe(true);
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

  it('bad sizes follow the request rules', async () => {
    const r = await flux(['generate', 'a cat', '--model', MODEL, '--width', '100']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/width: must be one of the allowed sizes; got 100/);
  });
});
