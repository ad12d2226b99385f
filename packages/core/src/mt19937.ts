/**
 * The 32-bit Mersenne Twister exactly as torch's CPU generator runs it
 * (aten/src/ATen/core/MT19937RNGEngine.h): standard MT19937 (Matsumoto & Nishimura),
 * seeded from the low 32 bits of the 64-bit seed, state regenerated on the first draw.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

export class MT19937 {
  private readonly state = new Uint32Array(N);
  /** index of the next word of `state` to temper; N means "twist before the next draw" */
  private next = N;

  /** `seed` must be an integer in [0, 2^32): torch passes `seed & 0xffffffff`. */
  constructor(seed: number) {
    const mt = this.state;
    mt[0] = seed >>> 0;
    for (let j = 1; j < N; j++) {
      const prev = mt[j - 1]!;
      mt[j] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + j) >>> 0;
    }
  }

  /** One 32-bit draw (torch `CPUGeneratorImpl::random()`), as an unsigned integer. */
  nextUint32(): number {
    if (this.next >= N) this.twist();
    let y = this.state[this.next++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** Fill `out` with successive 32-bit draws (same stream as repeated `nextUint32`). */
  fillUint32(out: Uint32Array): void {
    const mt = this.state;
    let i = 0;
    while (i < out.length) {
      if (this.next >= N) this.twist();
      const end = Math.min(out.length, i + (N - this.next));
      let k = this.next;
      for (; i < end; i++) {
        let y = mt[k++]!;
        y ^= y >>> 11;
        y ^= (y << 7) & 0x9d2c5680;
        y ^= (y << 15) & 0xefc60000;
        y ^= y >>> 18;
        out[i] = y;
      }
      this.next = k;
    }
  }

  private twist(): void {
    const mt = this.state;
    let kk = 0;
    for (; kk < N - M; kk++) {
      const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
      mt[kk] = mt[kk + M]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; kk < N - 1; kk++) {
      const y = (mt[kk]! & UPPER_MASK) | (mt[kk + 1]! & LOWER_MASK);
      mt[kk] = mt[kk + (M - N)]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (mt[N - 1]! & UPPER_MASK) | (mt[0]! & LOWER_MASK);
    mt[N - 1] = mt[M - 1]! ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.next = 0;
  }
}
