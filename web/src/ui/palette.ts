// Quick open (Alt+T, Alt+\, Alt+|): type to filter saved sessions and local programs,
// Enter opens the highlighted one.
import type { Folder } from '../api';
import { h, clear } from './dom';
import type { TermSpec } from './term';
import { sessionSpec } from './sidebar';

interface Item {
  label: string;
  hint: string;
  spec: TermSpec;
  hay: string;
}

export function quickOpen(title: string, folders: Folder[], programs: string[], open: (spec: TermSpec) => void): void {
  const items: Item[] = [];
  for (const f of folders)
    for (const s of f.sessions)
      items.push({
        label: s.display_name,
        hint: `${s.host} · ${f.name}`,
        spec: sessionSpec(s),
        hay: [s.display_name, s.host, f.name, ...s.tags].join(' ').toLowerCase(),
      });
  for (const p of programs) items.push({ label: p, hint: 'local program', spec: { kind: 'pty', title: p, program: p }, hay: p });
  const input = h('input', { type: 'search', 'aria-label': 'Search devices and programs', placeholder: 'Device or program…', role: 'combobox', 'aria-controls': 'qo-list', 'aria-expanded': 'true' });
  const list = h('ul', { id: 'qo-list', role: 'listbox', class: 'qo-list', 'aria-label': 'Matches' });
  let shown: Item[] = [];
  let sel = 0;
  const render = () => {
    const q = input.value.trim().toLowerCase();
    shown = items.filter((i) => !q || i.hay.includes(q)).slice(0, 50);
    sel = Math.min(sel, Math.max(0, shown.length - 1));
    clear(
      list,
      shown.length === 0 ? h('li', { class: 'muted' }, 'Nothing matches.') : null,
      ...shown.map((it, i) =>
        h(
          'li',
          {
            role: 'option',
            id: `qo-${i}`,
            'aria-selected': String(i === sel),
            onclick: () => pick(it),
          },
          h('span', {}, it.label),
          h('span', { class: 'muted' }, it.hint),
        ),
      ),
    );
    input.setAttribute('aria-activedescendant', shown.length ? `qo-${sel}` : '');
    list.querySelector('[aria-selected="true"]')?.scrollIntoView({ block: 'nearest' });
  };
  const pick = (it: Item) => {
    dlg.close();
    open(it.spec);
  };
  input.addEventListener('input', () => {
    sel = 0;
    render();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') sel = Math.min(shown.length - 1, sel + 1);
    else if (ev.key === 'ArrowUp') sel = Math.max(0, sel - 1);
    else if (ev.key === 'Enter') {
      if (shown[sel]) pick(shown[sel]);
    } else return;
    ev.preventDefault();
    render();
  });
  const dlg = h('dialog', { class: 'dialog palette', 'aria-label': title }, h('h2', { class: 'visually-hidden' }, title), input, list);
  dlg.addEventListener('close', () => dlg.remove());
  document.body.appendChild(dlg);
  dlg.showModal();
  render();
}
