export * from './types.ts';
export * from './png.ts';
export * from './decode.ts';
export * from './resize.ts';
export * from './header.ts';
export * from './jpeg.ts';
