// The page's CSP allows <style> elements only with the per-response nonce the gateway
// writes into <meta name="opsgate-nonce">. xterm.js creates style elements at run time
// and takes no nonce option, so every <style> created through document.createElement
// gets the nonce at creation (before insertion, which is when the browser checks it).
// Styles injected as markup still have no nonce and stay blocked.

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
}

export {};
