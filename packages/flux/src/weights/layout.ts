/**
 * How a checkpoint layout maps onto a model: the one rule format for every rename, row concatenation (diffusers'
 * separate q/k/v), half swap (the final layer's shift/scale) and layout change (the VAE's 1x1 conv vs linear).
 *
 * A model states its keys once, in its modules' specs (the model's own names: BFL for the transformer and VAE,
 * transformers' for T5 and CLIP). A checkpoint layout is that spec plus one `Rule` per key saying which checkpoint
 * tensors build it. Rules are written as a table of module renames (`ModuleRename`, one reason each) and expanded
 * over the spec by `expandRenames`; a layout whose names are the model's own gets `identityRules`.
 * weights/checkpoint-weights.ts executes the rules, weights/architectures.ts derives the checkpoint's key table.
 */
import type { ParamSpec } from './spec.ts';
import type { WeightsError } from './validate.ts';

/** The checkpoint formats this library reads (and `flux inspect` reports). */
export type WeightsFormat =
  | 'bfl-transformer'
  | 'diffusers-transformer'
  | 'bfl-vae'
  | 'diffusers-vae'
  | 't5-encoder'
  | 'clip-text';

/**
 * How the sources of one model tensor become it:
 *   rename       one source, same values
 *   concat       the sources' rows concatenated in order (dim 0 of [out, in] weights and [out] biases)
 *   swap_halves  one source, its two row halves exchanged
 *   conv1x1      one source, a linear [out, in] used as a 1x1 conv [out, in, 1, 1]
 */
export type RuleOp = 'rename' | 'concat' | 'swap_halves' | 'conv1x1';

/** One model tensor (`key`, the model's name) built from checkpoint tensors (`from`, without the file's prefix). */
export interface Rule {
  readonly key: string;
  readonly from: readonly string[];
  readonly op: RuleOp;
  /** concat: rows of each source, in order. */
  readonly rows?: readonly number[];
  readonly why: string;
}

/**
 * One row of a rename table: the module `model` (a path in the model, e.g. `double_blocks.3.img_attn.qkv`) is read
 * from the module(s) `checkpoint`; every parameter under it keeps its leaf name (`weight`, `bias`) unless `leaf`
 * renames it. The longest matching `model` path applies; keys no row matches keep their name.
 */
export interface ModuleRename {
  readonly model: string;
  readonly checkpoint: readonly string[];
  /** Default 'rename'. `conv1x1` applies to the 4-D weight only (its bias is a plain rename). */
  readonly op?: RuleOp;
  readonly rows?: readonly number[];
  readonly leaf?: Readonly<Record<string, string>>;
  readonly why: string;
}

/** Everything the loader needs to read one layout of one model. */
export interface CheckpointLayout {
  readonly format: WeightsFormat;
  /** Which model, for messages ("the transformer"). */
  readonly model: string;
  /** The model's keys with their shapes in checkpoint layout (Linear [out, in], conv [out, in, kh, kw]). */
  readonly spec: ParamSpec;
  /** One rule per spec key, in spec order. */
  readonly rules: readonly Rule[];
  /** 2-D `*.weight` keys that are lookup tables (embeddings), kept [rows, dim] instead of laid out as a Linear. */
  readonly tables?: ReadonlySet<string>;
  /** Checkpoint keys a file MAY also hold (tied copies, legacy buffers): neither missing nor unexpected. */
  readonly optional?: ReadonlyMap<string, { readonly shape: readonly number[]; readonly note: string }>;
  /** The model's typed error for a checkpoint that does not match. */
  readonly error: new (message: string) => WeightsError;
  /** What to do, appended to a mismatch message. */
  readonly hint: string;
}

/** Rules for a checkpoint that uses the model's own names. */
export function identityRules(spec: ParamSpec, why = 'the model\'s own name'): Rule[] {
  return Object.keys(spec).map((key) => ({ key, from: [key], op: 'rename', why }));
}

/** Expands a rename table over `spec`: one rule per key, in spec order. */
export function expandRenames(spec: ParamSpec, table: readonly ModuleRename[], same = 'same name in both layouts'): Rule[] {
  const byModule = new Map(table.map((r) => [r.model, r]));
  const rules: Rule[] = [];
  for (const [key, shape] of Object.entries(spec)) {
    let rename: ModuleRename | undefined;
    let module = key;
    while (!rename && module.includes('.')) {
      module = module.slice(0, module.lastIndexOf('.')); // the longest module path first
      rename = byModule.get(module);
    }
    if (!rename) {
      rules.push({ key, from: [key], op: 'rename', why: same });
      continue;
    }
    const rest = key.slice(module.length + 1);
    const leaf = rename.leaf?.[rest] ?? rest;
    let op = rename.op ?? 'rename';
    if (op === 'conv1x1' && shape.length !== 4) op = 'rename';
    rules.push({ key, from: rename.checkpoint.map((c) => `${c}.${leaf}`), op, ...(rename.rows ? { rows: rename.rows } : {}), why: rename.why });
  }
  return rules;
}

/** The checkpoint keys a layout reads, with the shapes that build the model's spec. */
export function checkpointTable(layout: Pick<CheckpointLayout, 'spec' | 'rules'>): Map<string, number[]> {
  const table = new Map<string, number[]>();
  for (const r of layout.rules) {
    const shapes = sourceShapes(r, layout.spec[r.key]!);
    r.from.forEach((k, i) => table.set(k, shapes[i]!));
  }
  return table;
}

/** The checkpoint shape each source of `rule` must have for the model tensor to be `shape`. */
export function sourceShapes(rule: Rule, shape: readonly number[]): number[][] {
  switch (rule.op) {
    case 'rename':
    case 'swap_halves':
      return [[...shape]];
    case 'conv1x1':
      return [shape.slice(0, 2)];
    case 'concat': {
      const rows = rule.rows ?? rule.from.map(() => shape[0]! / rule.from.length);
      return rows.map((r) => [r, ...shape.slice(1)]);
    }
  }
}
