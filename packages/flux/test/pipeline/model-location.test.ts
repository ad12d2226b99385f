/**
 * Finding a model (src/pipeline/model-location.ts): the Hugging Face cache layout (HF_HOME / HF_HUB_CACHE, repo
 * ids), BFL single files under any name (format, variant and dims from the header), error messages.
 */
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixturePath, loadJsonFixture } from '../../../../test/harness/fixtures.ts';
import { FLUX_VAE } from '../../src/autoencoder/config.ts';
import { locateModel, ModelNotFoundError } from '../../src/pipeline/model-location.ts';
import { FLUX_DEV, FLUX_SCHNELL, fluxParamsFromDiffusers } from '../../src/transformer/config.ts';
import { bflTransformerArchitecture, bflVaeArchitecture } from '../../src/weights/architectures.ts';
import { writeSparseSafetensors } from '../../src/weights/safetensors.ts';
import { TINY_DEV, writeTinyDevBfl } from './helpers.ts';

const MODEL = fixturePath('pipeline', 'tiny-flux');
const SHA = '0123456789abcdef0123456789abcdef01234567';
let dir: string;

/** <hub>/models--black-forest-labs--FLUX.1-schnell/{refs/main, snapshots/<sha>/...} with links into tiny-flux. */
async function fakeHub(hub: string, repo = 'black-forest-labs/FLUX.1-schnell'): Promise<string> {
  const root = join(hub, `models--${repo.replace('/', '--')}`);
  const snap = join(root, 'snapshots', SHA);
  await mkdir(snap, { recursive: true });
  await mkdir(join(root, 'refs'), { recursive: true });
  await writeFile(join(root, 'refs', 'main'), SHA);
  for (const e of await readdir(MODEL)) await symlink(join(MODEL, e), join(snap, e));
  return snap;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flux-location-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('locateModel', () => {
  it('reads a diffusers folder: format and prefix of each component from its header, the variant from the transformer weights, scheduler from scheduler/', () => {
    const loc = locateModel({ model: MODEL, env: {} });
    const file = (part: string, name: string) => join(MODEL, part, name);
    expect(loc).toMatchObject({
      layout: 'diffusers',
      variant: 'schnell',
      textEncoderRoot: MODEL,
      transformer: { path: file('transformer', 'diffusion_pytorch_model.safetensors'), format: 'diffusers-transformer', prefix: '', config: file('transformer', 'config.json') },
      vae: { path: file('vae', 'diffusion_pytorch_model.safetensors'), format: 'diffusers-vae', prefix: '', config: file('vae', 'config.json') },
      clip: { path: file('text_encoder', 'model.safetensors'), format: 'clip-text' },
      t5: { path: file('text_encoder_2', 'model.safetensors'), format: 't5-encoder', prefix: '' },
    });
    expect(loc.transformer.params.guidanceEmbed).toBe(false);
    expect(loc.scheduler.shift).toBe(1);
  });

  it('finds FLUX.1-schnell in the HF cache under $HF_HOME/hub, or $HF_HUB_CACHE, when no model is given', async () => {
    const home = join(dir, 'hfhome');
    const snap = await fakeHub(join(home, 'hub'));
    expect(locateModel({ env: { HF_HOME: home } })).toMatchObject({ layout: 'hf-cache', name: 'black-forest-labs/FLUX.1-schnell', textEncoderRoot: snap });
    const cache = join(dir, 'hubcache');
    const snap2 = await fakeHub(cache);
    expect(locateModel({ env: { HF_HOME: home, HF_HUB_CACHE: cache } }).textEncoderRoot).toBe(snap2);
    // a repo id, a models--* folder and $FLUX_MODEL resolve too
    await fakeHub(cache, 'someone/tiny-flux');
    expect(locateModel({ model: 'someone/tiny-flux', env: { HF_HUB_CACHE: cache } }).layout).toBe('hf-cache');
    expect(locateModel({ model: join(cache, 'models--someone--tiny-flux'), env: {} }).textEncoderRoot).toContain(SHA);
    expect(locateModel({ env: { FLUX_MODEL: MODEL } }).layout).toBe('diffusers');
  });

  it('says where it looked and how to get the weights when nothing is found', () => {
    const env = { HF_HOME: join(dir, 'nothing') };
    expect(() => locateModel({ env })).toThrow(ModelNotFoundError);
    expect(() => locateModel({ env })).toThrow(/looked in .*nothing.*models--black-forest-labs--FLUX\.1-schnell.*flux-ts download/);
    expect(() => locateModel({ model: 'nobody/nothing', env })).toThrow(/not in the Hugging Face cache.*flux-ts download nobody\/nothing/);
    expect(() => locateModel({ model: join(dir, 'missing-folder'), env })).toThrow(/not found/);
  });

  it('BFL single files: the VAE beside them and the variant found from the headers, text encoders from a diffusers folder', async () => {
    const bfl = join(dir, 'bfl');
    await mkdir(bfl, { recursive: true });
    const sparse = (file: string, arch: { tensors: Map<string, number[]> }) =>
      writeSparseSafetensors(join(bfl, file), [...arch.tensors].map(([name, shape]) => ({ name, dtype: 'BF16' as const, shape })));
    await sparse('flux1-schnell.safetensors', bflTransformerArchitecture(FLUX_SCHNELL));
    const env = { HF_HOME: join(dir, 'nothing') };
    expect(() => locateModel({ model: join(bfl, 'flux1-schnell.safetensors'), env })).toThrow(/autoencoder not found: no VAE checkpoint\(s\) beside .*ae\.safetensors/);
    await sparse('vae-weights.safetensors', bflVaeArchitecture(FLUX_VAE));
    expect(() => locateModel({ model: join(bfl, 'flux1-schnell.safetensors'), env })).toThrow(/needs the text encoders.*--text-encoders/);
    const loc = locateModel({ model: bfl, textEncoders: MODEL, env });
    expect(loc).toMatchObject({ layout: 'bfl', variant: 'schnell', textEncoderRoot: MODEL, vae: { path: join(bfl, 'vae-weights.safetensors'), format: 'bfl-vae', prefix: '' } });
    expect(loc.transformer).toMatchObject({ format: 'bfl-transformer', prefix: '', variant: 'schnell', params: FLUX_SCHNELL, paramsFrom: "the header's shapes" });
    // the name says schnell, the header says dev: the header wins
    const misnamed = join(dir, 'bfl-misnamed');
    await mkdir(misnamed, { recursive: true });
    await writeSparseSafetensors(join(misnamed, 'flux1-schnell.safetensors'), [...bflTransformerArchitecture(FLUX_DEV).tensors].map(([name, shape]) => ({ name: `model.diffusion_model.${name}`, dtype: 'BF16' as const, shape })));
    const dev = locateModel({ model: join(misnamed, 'flux1-schnell.safetensors'), vae: join(bfl, 'vae-weights.safetensors'), textEncoders: MODEL, env });
    expect(dev).toMatchObject({ variant: 'dev', transformer: { prefix: 'model.diffusion_model.', params: FLUX_DEV } });
    expect(dev.scheduler.use_dynamic_shifting).toBe(true);
  });

  it('names a missing component of a diffusers folder', async () => {
    const m = join(dir, 'partial');
    await mkdir(m, { recursive: true });
    for (const e of await readdir(MODEL)) if (e !== 'text_encoder_2') await symlink(join(MODEL, e), join(m, e));
    expect(() => locateModel({ model: m, env: {} })).toThrow(/component text_encoder_2\/ is missing/);
  });
});

describe('a tiny dev checkpoint in BFL format saved as model.safetensors', () => {
  it('has its format, variant and dims read from the header; the RoPE axes from the config.json beside it', async () => {
    const d = join(dir, 'tiny-bfl-dev');
    await mkdir(d, { recursive: true });
    await writeTinyDevBfl(join(d, 'model.safetensors'));
    const env = {};
    const opts = { model: join(d, 'model.safetensors'), textEncoders: MODEL, vae: join(MODEL, 'vae'), env };
    // a head dim of 8 does not tell the RoPE axes
    expect(() => locateModel(opts)).toThrow(/head dim of 8, not FLUX\.1's 128, so its RoPE axes cannot be told/);
    const config = await loadJsonFixture('pipeline', 'tiny-flux-dev/transformer/config.json');
    const want = fluxParamsFromDiffusers(config);
    const viaOption = locateModel({ ...opts, transformerConfig: join(TINY_DEV, 'transformer', 'config.json') });
    expect(viaOption.transformer.params).toEqual(want);
    await copyFile(join(TINY_DEV, 'transformer', 'config.json'), join(d, 'config.json'));
    const loc = locateModel(opts);
    expect(loc).toMatchObject({ layout: 'bfl', name: 'model.safetensors', variant: 'dev', vae: { format: 'diffusers-vae' } });
    expect(loc.transformer).toMatchObject({ format: 'bfl-transformer', variant: 'dev', params: want });
    expect(loc.transformer.paramsFrom).toContain('RoPE axes from');
    expect(loc.scheduler).toMatchObject({ use_dynamic_shifting: true, shift: 3 });
    // the folder alone: its one transformer checkpoint is found by its header
    expect(locateModel({ ...opts, model: d }).transformer.path).toBe(join(d, 'model.safetensors'));
  });

  it('a diffusers config.json that disagrees with the header is named', async () => {
    const m = join(dir, 'disagree');
    await mkdir(m, { recursive: true });
    for (const e of await readdir(MODEL)) if (e !== 'transformer') await symlink(join(MODEL, e), join(m, e));
    await mkdir(join(m, 'transformer'));
    await copyFile(join(TINY_DEV, 'transformer', 'diffusion_pytorch_model.safetensors'), join(m, 'transformer', 'diffusion_pytorch_model.safetensors'));
    const config = await loadJsonFixture<Record<string, unknown>>('pipeline', 'tiny-flux-dev/transformer/config.json');
    await writeFile(join(m, 'transformer', 'config.json'), JSON.stringify({ ...config, guidance_embeds: false }));
    expect(() => locateModel({ model: m, env: {} })).toThrow(/says guidance_embeds false, but the weights have a guidance embedder \(dev\)/);
  });
});
