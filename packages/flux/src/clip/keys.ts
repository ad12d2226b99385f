/**
 * The CLIP text encoder's checkpoint layout: transformers' `CLIPTextModel` (`text_encoder/`), whose names are the
 * modules' own (`CLIPTextModel.spec`). Files saved by transformers 4.x (FLUX.1's among them) carry a `text_model.`
 * prefix (detected with the format, weights/detect.ts); those older than 4.31 also a `position_ids` buffer.
 */
import type { ClipTextConfig } from './config.ts';
import { TextEncoderWeightsError } from '../text-encoders/token-ids.ts';
import { identityRules, type CheckpointLayout } from '../weights/layout.ts';
import { CLIPTextModel } from './clip-text-model.ts';

export function clipLayout(c: ClipTextConfig): CheckpointLayout {
  const spec = CLIPTextModel.spec(c);
  return {
    format: 'clip-text',
    model: 'CLIP text model config.json',
    spec,
    rules: identityRules(spec),
    // both embedding tables are read by rows on the host
    tables: new Set(['embeddings.token_embedding.weight', 'embeddings.position_embedding.weight']),
    optional: new Map([['embeddings.position_ids', { shape: [1, c.maxPositionEmbeddings], note: 'buffer saved by transformers < 4.31' }]]),
    error: TextEncoderWeightsError,
    hint: 'Check that the folder holds the complete, matching text encoder (text_encoder/ of a diffusers FLUX.1 download).',
  };
}
