/**
 * Nothing to run: the build's declaration file of this module (`loader-warmup.d.ts`) is the TypeScript file
 * that a spare runner imports once to warm the TypeScript loader (see spare.ts's `warmLoader`).
 */
export const LOADER_WARMUP = true;
