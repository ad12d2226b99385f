/**
 * Which files of a hub repository to fetch. Patterns are fnmatch globs as in huggingface_hub's
 * `allow_patterns` / `ignore_patterns`: `*` matches any run of characters, `/` included; `?` one character;
 * `[abc]` / `[!abc]` a class; a pattern ending in `/` means everything under that folder.
 */

/** The files a FLUX pipeline reads from a diffusers-layout repository (black-forest-labs/FLUX.1-schnell, -dev). */
export const FLUX_DIFFUSERS_FILES: readonly string[] = Object.freeze([
  'model_index.json',
  'scheduler/*',
  'text_encoder/config.json',
  'text_encoder/model.safetensors',
  'text_encoder_2/config.json',
  'text_encoder_2/*.safetensors',
  'text_encoder_2/*.safetensors.index.json',
  'tokenizer/*',
  'tokenizer_2/*',
  'transformer/config.json',
  'transformer/*.safetensors',
  'transformer/*.safetensors.index.json',
  'vae/config.json',
  'vae/diffusion_pytorch_model.safetensors',
]);

/** Never fetched by default: other frameworks' weights and repository chrome. `--include` overrides these. */
export const DEFAULT_EXCLUDES: readonly string[] = Object.freeze([
  '*.bin', '*.onnx', '*.onnx_data', '*.msgpack', '*.h5', '*.ot', '*.ckpt', '*.pt', '*.pth', '*.gguf', '*.pb',
  '*.mlmodel', '*.tflite', '.gitattributes',
]);

const cache = new Map<string, RegExp>();

/** fnmatch-style glob -> anchored RegExp. */
export function globToRegExp(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re) return re;
  const p = pattern.endsWith('/') ? `${pattern}*` : pattern;
  let src = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i];
    if (c === '*') src += '.*';
    else if (c === '?') src += '.';
    else if (c === '[') {
      const end = p.indexOf(']', i + 2);
      if (end < 0) {
        src += '\\[';
        continue;
      }
      let body = p.slice(i + 1, end);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      src += `[${negate ? '^' : ''}${body.replace(/[\\\]^]/g, '\\$&')}]`;
      i = end;
    } else src += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  re = new RegExp(`^${src}$`, 's');
  cache.set(pattern, re);
  return re;
}

export function matchesAny(path: string, patterns: readonly string[]): boolean {
  return patterns.some((p) => globToRegExp(p).test(path));
}

export interface Selection {
  /** Extra patterns to fetch, on top of the default selection (they override DEFAULT_EXCLUDES). */
  include?: readonly string[];
  /** Patterns never to fetch (win over everything). */
  exclude?: readonly string[];
}

/**
 * The default selection: for a diffusers-layout repo (it has `model_index.json`) the FLUX pipeline files only
 * (so the single-file duplicates `flux1-schnell.safetensors` / `ae.safetensors` are skipped); for any other repo
 * every file. Either way minus DEFAULT_EXCLUDES. Then `include` adds and `exclude` removes.
 */
export function selectFiles(paths: readonly string[], sel: Selection = {}): string[] {
  const diffusers = paths.includes('model_index.json');
  const include = sel.include ?? [];
  const exclude = sel.exclude ?? [];
  return paths.filter((p) => {
    if (matchesAny(p, exclude)) return false;
    if (matchesAny(p, include)) return true;
    if (matchesAny(p, DEFAULT_EXCLUDES)) return false;
    return diffusers ? matchesAny(p, FLUX_DIFFUSERS_FILES) : true;
  });
}
