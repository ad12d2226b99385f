/**
 * `pnpm flux noise --shape 1,16,64,64 --seed 42 --out noise.safetensors`
 * Writes torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) to a safetensors file
 * (tensor "noise"), bit for bit what torch returns on an x86-64 machine.
 */
import {
  NORMAL_KERNELS, parseShape, SEED_MAX, SEED_MIN, TorchGenerator,
  type NoiseDtype, type NormalKernel,
} from '@flux-ts/core';
import { writeSafetensors } from '@flux-ts/flux';
import { usageError, type CommandSpec } from '../command.ts';
import { seedValue } from '../seeds.ts';
import { str } from '../options.ts';

const DTYPES: readonly NoiseDtype[] = ['float32', 'bfloat16'];

export const command: CommandSpec = {
  name: 'noise',
  usage: '--shape 1,16,64,64 --seed 42 --out noise.safetensors [options]',
  description: 'Write seeded Gaussian noise identical to torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=...) to a safetensors file (tensor "noise"; metadata: seed, shape, generator, kernel, dtype).',
  groups: [
    {
      title: 'noise',
      options: [
        { name: 'shape', type: 'string', arg: 'DIMS', help: 'comma-separated dimensions, e.g. 1,16,64,64 (FLUX latents for 512x512: [1,16,64,64])' },
        { name: 'seed', short: 's', type: 'string', arg: 'S', help: `integer from ${SEED_MIN} to ${SEED_MAX} (negative seeds wrap modulo 2^64 as in torch; only seed mod 2^32 affects the values)` },
        { name: 'output', aliases: ['out'], short: 'o', type: 'string', arg: 'FILE', help: 'output .safetensors path' },
        { name: 'dtype', type: 'string', choices: DTYPES, help: 'float32 (default) or bfloat16 (written as BF16, = torch.randn(..., dtype=torch.bfloat16))' },
        { name: 'kernel', type: 'string', choices: NORMAL_KERNELS, help: 'avx2 (default: torch on x86-64) or scalar (torch on other CPUs, e.g. aarch64)' },
      ],
    },
  ],
  async run(args) {
    for (const [name, shown] of [['shape', '--shape'], ['seed', '--seed'], ['output', '--out']] as const) {
      if (typeof args.values[name] !== 'string' || args.values[name] === '') throw usageError('noise', `${shown} is required`);
    }
    const seed = seedValue(args, str(args, 'seed')!, 'noise');
    const dtype = (str(args, 'dtype') ?? 'float32') as NoiseDtype;
    const kernel = (str(args, 'kernel') ?? 'avx2') as NormalKernel;
    const out = str(args, 'output')!;
    const shape = parseShape(str(args, 'shape')!);

    const noise = new TorchGenerator(seed, { kernel }).randn(shape, { dtype });
    const data = dtype === 'bfloat16'
      ? Uint16Array.from(new Uint32Array(noise.buffer), (bits) => bits >>> 16) // already rounded to bf16
      : noise;
    await writeSafetensors(out, { noise: { dtype: dtype === 'bfloat16' ? 'BF16' : 'F32', shape, data } }, {
      seed: seed.toString(),
      shape: JSON.stringify(shape),
      generator: 'torch.Generator(cpu).manual_seed',
      kernel,
      dtype,
    });
    console.log(`wrote noise [${shape.join(', ')}] ${dtype}, seed ${seed}, ${kernel} kernel -> ${out}`);
    return 0;
  },
};
