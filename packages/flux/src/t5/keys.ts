/**
 * The T5 encoder's checkpoint layout: transformers' `T5EncoderModel` as saved (`text_encoder_2/`), whose names are
 * the modules' own (`T5EncoderModel.spec`). `encoder.embed_tokens.weight` is a tied copy of `shared.weight` that
 * save_pretrained leaves out; a file may still hold it.
 */
import type { T5Config } from './config.ts';
import { TextEncoderWeightsError } from '../text-encoders/token-ids.ts';
import { identityRules, type CheckpointLayout } from '../weights/layout.ts';
import { T5EncoderModel } from './t5-encoder-model.ts';

export function t5Layout(c: T5Config): CheckpointLayout {
  const spec = T5EncoderModel.spec(c);
  return {
    format: 't5-encoder',
    model: 'T5 encoder config.json',
    spec,
    rules: identityRules(spec),
    // rows gathered from `shared` on the host; the position bias table is read by computeBias, not multiplied
    tables: new Set(Object.keys(spec).filter((k) => k === 'shared.weight' || k.endsWith('.relative_attention_bias.weight'))),
    optional: new Map([['encoder.embed_tokens.weight', { shape: [c.vocabSize, c.dModel], note: 'tied copy of shared.weight' }]]),
    error: TextEncoderWeightsError,
    hint: 'Check that the folder holds the complete, matching text encoder (text_encoder_2/ of a diffusers FLUX.1 download).',
  };
}
