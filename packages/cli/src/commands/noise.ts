/**
 * `pnpm flux noise --shape 1,16,64,64 --seed 42 --out noise.safetensors`
 * Writes torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) to a safetensors file
 * (tensor "noise"), bit for bit what torch returns on an x86-64 machine.
 */
import { parseArgs } from 'node:util';
import {
  FluxError, NORMAL_KERNELS, normalizeSeed, parseShape, SEED_MAX, SEED_MIN, TorchGenerator,
  type NoiseDtype, type NormalKernel,
} from '@flux-ts/core';
import { writeSafetensors } from '@flux-ts/flux';

const DTYPES: readonly NoiseDtype[] = ['float32', 'bfloat16'];

const HELP = `usage: pnpm flux noise --shape 1,16,64,64 --seed 42 --out noise.safetensors [options]

Write seeded Gaussian noise identical to
  torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=...)
to a safetensors file (tensor "noise"; metadata: seed, shape, generator, kernel, dtype).

options:
  --shape   comma-separated dimensions, e.g. 1,16,64,64 (FLUX latents for 512x512: [1,16,64,64])
  --seed    integer from ${SEED_MIN} to ${SEED_MAX} (negative seeds wrap modulo 2^64 as in torch;
            only seed mod 2^32 affects the values)
  --out     output .safetensors path
  --dtype   float32 (default) or bfloat16 (written as BF16, = torch.randn(..., dtype=torch.bfloat16))
  --kernel  avx2 (default: torch on x86-64) or scalar (torch on other CPUs, e.g. aarch64)
  --help    show this help`;

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        shape: { type: 'string' },
        seed: { type: 'string' },
        out: { type: 'string', short: 'o' },
        dtype: { type: 'string', default: 'float32' },
        kernel: { type: 'string', default: 'avx2' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    throw new FluxError('INVALID_ARGUMENT', `${(e as Error).message}\n\n${HELP}`);
  }
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  for (const name of ['shape', 'seed', 'out'] as const) {
    if (typeof values[name] !== 'string' || values[name] === '') {
      throw new FluxError('INVALID_ARGUMENT', `--${name} is required\n\n${HELP}`);
    }
  }
  const shape = parseShape(values.shape as string);
  const seed = normalizeSeed(values.seed as string);
  const dtype = values.dtype as NoiseDtype;
  if (!DTYPES.includes(dtype)) {
    throw new FluxError('INVALID_ARGUMENT', `--dtype "${dtype}" is not supported; use one of: ${DTYPES.join(', ')}`);
  }
  const kernel = values.kernel as NormalKernel;
  if (!NORMAL_KERNELS.includes(kernel)) {
    throw new FluxError('INVALID_ARGUMENT', `--kernel "${kernel}" is not known; use one of: ${NORMAL_KERNELS.join(', ')}`);
  }
  const out = values.out as string;

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
}
