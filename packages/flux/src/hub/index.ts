// Hugging Face hub: downloads into the HF cache layout, and the layout helpers other code uses to find models.
export * from './cache.ts';
export * from './select.ts';
export * from './http.ts';
export * from './download.ts';
export * from './progress.ts';
