// The API reference page (`{base}/api/docs`): RapiDoc, bundled here from npm so that
// the page works offline and under the console's CSP (scripts from 'self' only). RapiDoc
// is a Lit web component: its styles are constructed stylesheets in its shadow root,
// which need no nonce; its theme <style> gets the page's nonce from `./docs-csp`.
//
// No request may leave the gateway's origin: the fonts are the system's (RapiDoc
// otherwise adds "Open Sans" from a font CDN), the document comes from the
// same origin, and the server list is the document's own (relative to this origin).
import './docs-csp';
import 'rapidoc';
import './docs.css';

const doc = document.createElement('rapi-doc');
const attrs: Record<string, string> = {
  // Relative to `{base}/api/docs`: `{base}/api/openapi.json`.
  'spec-url': 'openapi.json',
  'render-style': 'read',
  'theme': matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light',
  'regular-font': 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif',
  'mono-font': 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace',
  'font-size': 'default',
  // RapiDoc otherwise loads Open Sans from a font CDN (FontFace objects, not CSS).
  'load-fonts': 'false',
  'show-header': 'false',
  'allow-spec-url-load': 'false',
  'allow-spec-file-load': 'false',
  'allow-server-selection': 'false',
  'allow-authentication': 'false',
  'schema-description-expanded': 'true',
  'show-method-in-nav-bar': 'as-colored-text',
  'nav-item-spacing': 'compact',
  'heading-text': 'opsgate REST API',
};
for (const [k, v] of Object.entries(attrs)) doc.setAttribute(k, v);
document.body.append(doc);
