/** The rule format (src/weights/layout.ts): a rename table expanded over a spec, and the shapes each rule reads. */
import { describe, expect, it } from 'vitest';
import { expandRenames, identityRules, sourceShapes, type ModuleRename } from '../../src/weights/layout.ts';

const spec = {
  'blk.qkv.weight': [6, 2],
  'blk.qkv.bias': [6],
  'blk.norm.query_norm.scale': [2],
  'blk.attn.q.weight': [4, 4, 1, 1],
  'blk.attn.q.bias': [4],
  'blk.attn.norm.weight': [4],
  'head.weight': [8, 4],
  'kept.weight': [3],
};

const table: ModuleRename[] = [
  { model: 'blk', checkpoint: ['block'], why: 'renamed' },
  { model: 'blk.qkv', checkpoint: ['block.to_q', 'block.to_k', 'block.to_v'], op: 'concat', rows: [2, 2, 2], why: 'q, k, v apart' },
  { model: 'blk.norm.query_norm', checkpoint: ['block.norm_q'], leaf: { scale: 'weight' }, why: 'scale is weight' },
  { model: 'blk.attn.q', checkpoint: ['block.attn.to_q'], op: 'conv1x1', why: 'linear vs 1x1 conv' },
  { model: 'head', checkpoint: ['out'], op: 'swap_halves', why: 'halves swapped' },
];

describe('expandRenames', () => {
  const rules = expandRenames(spec, table);
  const byKey = new Map(rules.map((r) => [r.key, r]));

  it('gives one rule per spec key, in spec order', () => {
    expect(rules.map((r) => r.key)).toEqual(Object.keys(spec));
  });

  it('applies the longest matching module path, keeping or renaming the leaf', () => {
    expect(byKey.get('blk.qkv.bias')).toMatchObject({ from: ['block.to_q.bias', 'block.to_k.bias', 'block.to_v.bias'], op: 'concat', rows: [2, 2, 2] });
    expect(byKey.get('blk.norm.query_norm.scale')).toMatchObject({ from: ['block.norm_q.weight'], op: 'rename' });
    expect(byKey.get('blk.attn.norm.weight')).toMatchObject({ from: ['block.attn.norm.weight'], op: 'rename', why: 'renamed' });
    expect(byKey.get('head.weight')).toMatchObject({ from: ['out.weight'], op: 'swap_halves' });
    expect(byKey.get('kept.weight')).toMatchObject({ from: ['kept.weight'], op: 'rename', why: 'same name in both layouts' });
  });

  it('a layout change applies to the 4-D weight, not to its bias', () => {
    expect(byKey.get('blk.attn.q.weight')!.op).toBe('conv1x1');
    expect(byKey.get('blk.attn.q.bias')!.op).toBe('rename');
  });
});

describe('sourceShapes', () => {
  const rules = new Map(expandRenames(spec, table).map((r) => [r.key, r]));
  it('is the checkpoint shape of each source', () => {
    expect(sourceShapes(rules.get('blk.qkv.weight')!, [6, 2])).toEqual([[2, 2], [2, 2], [2, 2]]);
    expect(sourceShapes(rules.get('blk.attn.q.weight')!, [4, 4, 1, 1])).toEqual([[4, 4]]);
    expect(sourceShapes(rules.get('head.weight')!, [8, 4])).toEqual([[8, 4]]);
  });

  it('identity rules read every key under its own name', () => {
    expect(identityRules(spec).every((r) => r.from.length === 1 && r.from[0] === r.key && r.op === 'rename')).toBe(true);
  });
});
