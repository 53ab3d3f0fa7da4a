// The host-key question (trust on first use): host, algorithm and fingerprint, with
// "Trust" and "Reject". Closing the dialog any other way rejects.
import { h } from './dom';

export function hostkeyDialog(
  where: string,
  algorithm: string,
  fingerprint: string,
  answer: (trust: boolean) => void,
): void {
  let trusted = false;
  const dlg = h(
    'dialog',
    { class: 'dialog hostkey', 'aria-label': 'Unknown host key' },
    h('h2', {}, 'Unknown host key'),
    h('p', {}, 'This is the first connection to this host from your account. Compare the fingerprint with the one the device shows (', h('code', {}, 'show ssh'), ' / ', h('code', {}, 'ssh-keygen -lf'), ') before trusting it.'),
    h(
      'dl',
      { class: 'kv' },
      h('dt', {}, 'Host'),
      h('dd', {}, where),
      h('dt', {}, 'Algorithm'),
      h('dd', {}, algorithm),
      h('dt', {}, 'Fingerprint'),
      h('dd', {}, h('code', { class: 'fingerprint' }, fingerprint)),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', onclick: () => dlg.close() }, 'Reject'),
      h('button', { type: 'button', class: 'primary', onclick: () => ((trusted = true), dlg.close()) }, 'Trust'),
    ),
  );
  dlg.addEventListener('close', () => {
    dlg.remove();
    answer(trusted);
  });
  document.body.appendChild(dlg);
  dlg.showModal();
}
