// The reference page's CSP allows <style> elements only with the per-response nonce the
// gateway writes into <meta name="opsgate-nonce"> (as the console's, see `./csp`).
// RapiDoc (Lit) renders its theme as a <style> inside a Lit template: the template is
// parsed once and its content cloned with document.importNode, so that <style> is never
// made by document.createElement; every <style> in a cloned fragment gets the nonce here
// before the fragment is inserted, which is when the browser checks it. <style> elements
// made by createElement get it too, as on the console. What RapiDoc renders comes from
// the gateway's own generated document, not from users. Must run before RapiDoc loads.
// (Not shared with the console: its bundle keeps its single script.)

const meta = document.querySelector<HTMLMetaElement>('meta[name="opsgate-nonce"]');
const nonce = meta?.content ?? '';
meta?.remove(); // keep it out of the DOM once read

if (nonce && !nonce.startsWith('__')) {
  const create = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, opts?: ElementCreationOptions) {
    const el = create.call(this, tag, opts);
    if (tag.toLowerCase() === 'style') el.setAttribute('nonce', nonce);
    return el;
  } as typeof Document.prototype.createElement;

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
