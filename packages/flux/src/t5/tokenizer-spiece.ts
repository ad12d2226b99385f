/**
 * A minimal reader of SentencePiece's `spiece.model` (a protobuf `ModelProto`, sentencepiece_model.proto):
 *   1: repeated SentencePiece pieces { 1: string piece, 2: float score, 3: Type type (default NORMAL = 1) }
 *   2: TrainerSpec { 3: ModelType model_type (1 UNIGRAM), 35: byte_fallback, 40: unk_id, 41: bos_id, 42: eos_id, 43: pad_id }
 *   3: NormalizerSpec { 1: string name, 2: bytes precompiled_charsmap, 3: add_dummy_prefix,
 *                       4: remove_extra_whitespaces, 5: escape_whitespaces }
 * Unknown fields are skipped by wire type.
 */
/** sentencepiece_model.proto's SentencePiece.Type. */
export const PieceType = Object.freeze({
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const);
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

export interface SentencePieceModel {
  pieces: { piece: string; score: number; type: PieceType }[];
  modelType: number;
  byteFallback: boolean;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
  normalizerName: string;
  precompiledCharsmap: Uint8Array;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
}

class Reader {
  pos = 0;
  readonly buf: Uint8Array;
  readonly end: number;
  constructor(buf: Uint8Array, end: number = buf.length) {
    this.buf = buf;
    this.end = end;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error('varint too long');
    }
  }
  int(): number {
    return Number(BigInt.asIntN(32, this.varint()));
  }
  bytes(): Uint8Array {
    const n = Number(this.varint());
    if (this.pos + n > this.end) throw new Error('truncated length-delimited field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  float(): number {
    if (this.pos + 4 > this.end) throw new Error('truncated float');
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).getFloat32(0, true);
    this.pos += 4;
    return v;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
    if (this.pos > this.end) throw new Error('truncated field');
  }
  *fields(): Generator<[number, number]> {
    while (this.pos < this.end) {
      const key = Number(this.varint());
      yield [key >>> 3, key & 7];
    }
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parse a spiece.model; throws Error (the caller wraps it with the file name) on malformed data. */
export function parseSentencePieceModel(buf: Uint8Array): SentencePieceModel {
  const m: SentencePieceModel = {
    pieces: [],
    modelType: 1,
    byteFallback: false,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
    normalizerName: '',
    precompiledCharsmap: new Uint8Array(0),
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
  };
  const r = new Reader(buf);
  for (const [field, wire] of r.fields()) {
    if (field === 1 && wire === 2) {
      const body = r.bytes();
      const p = new Reader(body);
      let piece = '';
      let score = 0;
      let type: PieceType = PieceType.NORMAL;
      for (const [f, w] of p.fields()) {
        if (f === 1 && w === 2) piece = utf8.decode(p.bytes());
        else if (f === 2 && w === 5) score = p.float();
        else if (f === 3 && w === 0) type = p.int() as PieceType; // (any value: unknown types are kept, as the reference does)
        else p.skip(w);
      }
      m.pieces.push({ piece, score, type });
    } else if (field === 2 && wire === 2) {
      const body = r.bytes();
      const t = new Reader(body);
      for (const [f, w] of t.fields()) {
        if (w !== 0) t.skip(w);
        else if (f === 3) m.modelType = t.int();
        else if (f === 35) m.byteFallback = t.int() !== 0;
        else if (f === 40) m.unkId = t.int();
        else if (f === 41) m.bosId = t.int();
        else if (f === 42) m.eosId = t.int();
        else if (f === 43) m.padId = t.int();
        else t.varint();
      }
    } else if (field === 3 && wire === 2) {
      const body = r.bytes();
      const n = new Reader(body);
      for (const [f, w] of n.fields()) {
        if (f === 1 && w === 2) m.normalizerName = utf8.decode(n.bytes());
        else if (f === 2 && w === 2) m.precompiledCharsmap = n.bytes().slice();
        else if (f === 3 && w === 0) m.addDummyPrefix = n.int() !== 0;
        else if (f === 4 && w === 0) m.removeExtraWhitespaces = n.int() !== 0;
        else n.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  if (m.pieces.length === 0) throw new Error('no pieces: not a SentencePiece model');
  return m;
}
