/**
 * Seeded Gaussian noise, bit for bit what torch's CPU generator returns:
 *
 *   torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
 *
 * so that a seed gives the same starting latents (hence the same image) as diffusers.
 * Reference: torch 2.15 aten/src/ATen/native/cpu/DistributionTemplates.h (`normal_kernel`,
 * `normal_fill`, `NormalFill16`), aten/src/ATen/core/DistributionsHelper.h (`normal_distribution`),
 * aten/src/ATen/core/TransformationHelper.h (`uniform_real`), aten/src/ATen/native/cpu/avx_mathfun.h.
 *
 * torch has two ways to make a float32 normal tensor:
 *  - numel >= 16 (contiguous): draw numel uniform floats ((u32 & 0xffffff) * 2^-24), then Box-Muller on
 *    blocks of 16 (u[0..8] -> radius, u[8..16] -> angle); when numel % 16 != 0, draw 16 more uniforms for
 *    the last 16 elements and transform them again. The Box-Muller math depends on the CPU kernel:
 *      'avx2'   x86-64 with AVX2 or AVX-512 (normal has no AVX-512 kernel, it falls back to AVX2):
 *               avx_mathfun's Cephes log256_ps / sincos256_ps in float32, with the multiply-adds that
 *               GCC fuses into FMA. This is the default and is reproduced exactly.
 *      'scalar' every other CPU (aarch64, ATEN_CPU_CAPABILITY=default): libm logf/cosf/sinf; this
 *               reproduces glibc's (2.28+, as built with FMA contraction), see noise-math.ts.
 *  - numel < 16: per element `normal_distribution<double>`, two 53-bit uniforms per pair, the second
 *    value of each pair cached in the generator and returned by the next small draw.
 * bfloat16 (torch 2.15 runs `normal_fill` for reduced floats too; older releases may not): the float32 math rounded to
 * bfloat16, except that the tail block's 16 uniforms follow the whole blocks' directly.
 */
import { FluxError } from './errors.ts';
import { MT19937 } from './mt19937.ts';
import { glibcCosf, glibcLogf, glibcSinf, logAvx, sincosAvx } from './noise-math.ts';

/** Which of torch's CPU Box-Muller kernels to reproduce for tensors of 16 or more elements. */
export type NormalKernel = 'avx2' | 'scalar';
export const NORMAL_KERNELS: readonly NormalKernel[] = Object.freeze(['avx2', 'scalar']);
/** Output rounding: torch.randn(dtype=torch.bfloat16) is the float32 result rounded to bfloat16. */
export type NoiseDtype = 'float32' | 'bfloat16';

export interface TorchGeneratorOptions {
  /** Default 'avx2' (torch on x86-64 machines; the reference fixtures were made on one). */
  kernel?: NormalKernel;
}

/** torch.Generator.manual_seed accepts [-2^63, 2^64 - 1]; negative seeds wrap modulo 2^64. */
export const SEED_MIN = -(2n ** 63n);
export const SEED_MAX = 2n ** 64n - 1n;

export class NoiseError extends FluxError {
  constructor(message: string) {
    super('INVALID_NOISE_REQUEST', message);
    this.name = 'NoiseError';
  }
}

/**
 * The seed as torch stores it (`initial_seed()`): an integer in [0, 2^64).
 * Accepts a safe integer number, a bigint, or a decimal / 0x-hex string.
 */
export function normalizeSeed(seed: number | bigint | string): bigint {
  let v: bigint;
  if (typeof seed === 'bigint') {
    v = seed;
  } else if (typeof seed === 'number') {
    if (!Number.isSafeInteger(seed)) {
      throw new NoiseError(`seed ${seed} is not an integer that can be represented exactly; pass it as a bigint or a string (allowed: ${SEED_MIN} to ${SEED_MAX})`);
    }
    v = BigInt(seed);
  } else {
    const s = seed.trim();
    if (!/^-?(\d+|0x[0-9a-f]+)$/i.test(s)) {
      throw new NoiseError(`seed "${seed}" is not an integer (allowed: ${SEED_MIN} to ${SEED_MAX}, decimal or 0x-hex)`);
    }
    v = s.startsWith('-') ? -BigInt(s.slice(1)) : BigInt(s);
  }
  if (v < SEED_MIN || v > SEED_MAX) {
    throw new NoiseError(`seed ${v} is out of range: torch.Generator.manual_seed accepts ${SEED_MIN} to ${SEED_MAX}`);
  }
  return v < 0n ? v + 2n ** 64n : v;
}

/** Number of elements of `shape`, after checking each dimension is a non-negative integer. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new NoiseError(`shape [${shape.join(', ')}] is invalid: every dimension must be a non-negative integer`);
    }
    n *= d;
  }
  if (n > 2 ** 31 - 1) {
    throw new NoiseError(`shape [${shape.join(', ')}] has ${n} elements; at most ${2 ** 31 - 1} are supported`);
  }
  return n;
}

const f = Math.fround;
const TWO_POW_M24 = 2 ** -24;
const TWO_POW_M53 = 2 ** -53;
const TWO_PI_F = f(2 * Math.PI);
const sincos = new Float64Array(2);

/** Box-Muller on data[o..o+16) in place, torch `NormalFill16<float>` with the AVX2 kernel. */
function normalFill16Avx2(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[o + j]!);
    const u2 = data[o + j + 8]!;
    const radius = f(Math.sqrt(f(-2 * logAvx(u1))));
    sincosAvx(f(TWO_PI_F * u2), sincos);
    // _mm256_fmadd_ps(n, std=1, mean=0)
    data[o + j] = f(radius * sincos[1]!) + 0;
    data[o + j + 8] = f(radius * sincos[0]!) + 0;
  }
}

/** Box-Muller on data[o..o+16) in place, torch's scalar `NormalFill16` (glibc logf/cosf/sinf). */
function normalFill16Scalar(data: Float32Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[o + j]!);
    const u2 = data[o + j + 8]!;
    const radius = f(Math.sqrt(f(-2 * glibcLogf(u1))));
    const theta = f(2 * Math.PI * u2); // 2.0f * c10::pi<double> * u2, in double, stored as float
    // std::fma(radius * cos, std=1, mean=0)
    data[o + j] = f(radius * glibcCosf(theta)) + 0;
    data[o + j + 8] = f(radius * glibcSinf(theta)) + 0;
  }
}

/** Round float32 values to bfloat16 (round to nearest even), in place. */
function roundToBfloat16(a: Float32Array): void {
  const u = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) {
      u[i] = (x | 0x400000) & 0xffff0000; // NaN stays NaN
    } else {
      u[i] = ((x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000) >>> 0;
    }
  }
}

/**
 * A torch CPU generator: `new TorchGenerator(seed)` is `torch.Generator("cpu").manual_seed(seed)`,
 * and successive draws continue its state exactly as torch does (including the cached second
 * Box-Muller value of small draws).
 */
export class TorchGenerator {
  readonly kernel: NormalKernel;
  private engine!: MT19937;
  private seed!: bigint;
  /** torch `next_double_normal_sample_`: the r*sin(theta) half of the last small-path pair. */
  private cachedNormal: number | null = null;
  private readonly scratch = new Uint32Array(4096);

  constructor(seed: number | bigint | string, options: TorchGeneratorOptions = {}) {
    const kernel = options.kernel ?? 'avx2';
    if (!NORMAL_KERNELS.includes(kernel)) {
      throw new NoiseError(`unknown normal kernel "${String(kernel)}"; use one of: ${NORMAL_KERNELS.join(', ')}`);
    }
    this.kernel = kernel;
    this.manualSeed(seed);
  }

  /** `generator.manual_seed(seed)`: reseeds and forgets the cached normal. Returns this. */
  manualSeed(seed: number | bigint | string): this {
    this.seed = normalizeSeed(seed);
    this.engine = new MT19937(Number(this.seed & 0xffffffffn));
    this.cachedNormal = null;
    return this;
  }

  /** `generator.initial_seed()`: the seed in [0, 2^64). */
  initialSeed(): bigint {
    return this.seed;
  }

  /** One raw 32-bit draw (`CPUGeneratorImpl::random()`). */
  random(): number {
    return this.engine.nextUint32();
  }

  /** `torch.rand(shape, generator=g)` in float32: uniform floats in [0, 1). */
  rand(shape: readonly number[]): Float32Array {
    const out = new Float32Array(shapeSize(shape));
    this.fillUniform(out, 0, out.length);
    return out;
  }

  /** `torch.randn(shape, generator=g, dtype=float32 | bfloat16)`; bfloat16 values come back as float32. */
  randn(shape: readonly number[], options: { dtype?: NoiseDtype } = {}): Float32Array {
    const dtype = options.dtype ?? 'float32';
    if (dtype !== 'float32' && dtype !== 'bfloat16') {
      throw new NoiseError(`unsupported noise dtype "${String(dtype)}"; use float32 or bfloat16`);
    }
    const n = shapeSize(shape);
    const out = new Float32Array(n);
    if (n >= 16) {
      this.normalFill(out, dtype);
    } else {
      for (let i = 0; i < n; i++) out[i] = this.nextDoubleNormal();
    }
    if (dtype === 'bfloat16') roundToBfloat16(out);
    return out;
  }

  private fillUniform(out: Float32Array, start: number, end: number): void {
    const buf = this.scratch;
    for (let i = start; i < end; ) {
      const m = Math.min(buf.length, end - i);
      const chunk = m === buf.length ? buf : buf.subarray(0, m);
      this.engine.fillUint32(chunk);
      for (let k = 0; k < m; k++) out[i + k] = (chunk[k]! & 0xffffff) * TWO_POW_M24;
      i += m;
    }
  }

  /**
   * torch `normal_fill`. float32: all numel uniforms first, Box-Muller per 16, then 16 fresh uniforms
   * for the last 16 elements (when numel % 16 != 0) transformed again. bfloat16 (float32 buffer of
   * 16): only the whole blocks' uniforms are drawn before the 16 for the tail, so the tail differs.
   */
  private normalFill(data: Float32Array, dtype: NoiseDtype): void {
    const n = data.length;
    const fill16 = this.kernel === 'avx2' ? normalFill16Avx2 : normalFill16Scalar;
    const whole = n - (n % 16);
    this.fillUniform(data, 0, dtype === 'float32' ? n : whole);
    for (let i = 0; i < whole; i += 16) fill16(data, i);
    if (n % 16 !== 0) {
      const tail = new Float32Array(16);
      this.fillUniform(tail, 0, 16);
      fill16(tail, 0);
      data.set(tail, n - 16);
    }
  }

  /** 53-bit uniform double: random64() = (first << 32) | second, masked to 53 bits. */
  private uniformDouble(): number {
    const hi = this.engine.nextUint32();
    const lo = this.engine.nextUint32();
    return ((hi & 0x1fffff) * 4294967296 + lo) * TWO_POW_M53;
  }

  /** `at::normal_distribution<double>` (mean 0, std 1) then cast to float. */
  private nextDoubleNormal(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return f(v + 0);
    }
    const u1 = this.uniformDouble();
    const u2 = this.uniformDouble();
    const r = Math.sqrt(-2 * Math.log1p(-u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return f(r * Math.cos(theta) + 0);
  }
}

/** `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))` as float32. */
export function randn(
  shape: readonly number[],
  seed: number | bigint | string,
  options: TorchGeneratorOptions & { dtype?: NoiseDtype } = {},
): Float32Array {
  return new TorchGenerator(seed, options).randn(shape, options);
}

/** Parse "1,16,64,64" (also "1x16x64x64" or "[1, 16, 64, 64]") into a shape. */
export function parseShape(text: string): number[] {
  const body = text.trim().replace(/^\[(.*)\]$/, '$1').trim();
  const parts = body === '' ? [] : body.split(/\s*[,x]\s*/);
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new NoiseError(`shape "${text}" is invalid: give comma-separated non-negative integers, e.g. 1,16,64,64`);
  }
  const shape = parts.map(Number);
  shapeSize(shape);
  return shape;
}
