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
    // The API reference page bundles RapiDoc (about 860 kB, 227 kB gzipped) in one chunk.
    chunkSizeWarningLimit: 900,
    // Two pages: the console and the API reference (`{base}/api/docs`), which share
    // nothing but the CSP helper; each loads only its own chunks.
    rollupOptions: {
      input: { index: 'index.html', docs: 'docs.html' },
    },
  },
});
