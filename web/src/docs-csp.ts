// RapiDoc (Lit) renders its theme as a <style> element inside a Lit template: the
// template is parsed once and its content cloned with document.importNode, so the
// <style> is never made by document.createElement and `./csp` cannot give it the page's
// nonce; the CSP then blocks it (and logs an error). Here every <style> in a fragment
// cloned by importNode gets the nonce before the fragment is inserted, which is when
// the browser checks it. Only this page does this: what RapiDoc renders comes from the
// gateway's own generated document, not from users. Must run before RapiDoc loads.

// Its own copy of the nonce: `./csp` (a shared chunk, so evaluated first) removes
// the console's meta once read.
const meta = document.querySelector<HTMLMetaElement>('meta[name="opsgate-docs-nonce"]');
const nonce = meta?.content ?? '';
meta?.remove();

if (nonce && !nonce.startsWith('__')) {
  const importNode = Document.prototype.importNode;
  Document.prototype.importNode = function <T extends Node>(this: Document, node: T, deep?: boolean): T {
    const copy = importNode.call(this, node, deep) as T;
    if (copy instanceof DocumentFragment || copy instanceof Element) {
      for (const s of copy.querySelectorAll('style')) s.setAttribute('nonce', nonce);
    }
    return copy;
  } as typeof Document.prototype.importNode;
}

export {};
