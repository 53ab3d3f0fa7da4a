import { defineConfig } from 'vite';

// Relative asset URLs, so the same build works under any `base_path` (the gateway
// serves the page at `{base}/` and the files at `{base}/assets/`).
export default defineConfig({
  base: './',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2022',
    sourcemap: false,
    // No inline scripts: the CSP allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 800,
  },
});
