// The console's keys. None of Ctrl+T/W/N (the browser's). Everything else typed in a
// terminal goes to the program.
import { h } from './dom';

export const SHORTCUTS: [string, string][] = [
  ['Alt+T', 'Open a device or program in a new tab'],
  ['Alt+\\', 'Open beside the focused pane (split right)'],
  ['Alt+Shift+\\', 'Open below the focused pane (split down)'],
  ['Alt+W', 'Close the focused pane (ends its program)'],
  ['Alt+← → ↑ ↓', 'Move focus between panes'],
  ['Alt+1 … 9', 'Go to tab 1 … 9'],
  ['Alt+PageUp / PageDown', 'Previous / next tab'],
  ['Alt+= / Alt+- / Alt+0', 'Larger / smaller / default font'],
  ['Alt+Shift+F', 'Find in the terminal'],
  ['Ctrl+Shift+C / Ctrl+Shift+V', 'Copy the selection / paste'],
  ['Ctrl+Shift+F', 'Search the device list'],
  ['Shift+F10', 'Actions for the focused device (back up, config versions, edit…)'],
  ['n / p (or j / k)', 'Next / previous change in a config diff'],
  ['?', 'This list (outside a terminal)'],
];

export interface Actions {
  newTab(): void;
  split(dir: 'right' | 'down'): void;
  closePane(): void;
  move(dir: 'left' | 'right' | 'up' | 'down'): void;
  tab(i: number): void;
  cycle(d: number): void;
  font(delta: number | 0): void;
  find(): void;
  searchTree(): void;
  help(): void;
}

export function installShortcuts(signal: AbortSignal, a: Actions): void {
  window.addEventListener(
    'keydown',
    (ev) => {
      if (document.querySelector('dialog[open]')) return;
      const alt = ev.altKey && !ev.ctrlKey && !ev.metaKey;
      let handled = true;
      if (alt && !ev.shiftKey && ev.code === 'KeyT') a.newTab();
      else if (alt && ev.code === 'Backslash') a.split(ev.shiftKey ? 'down' : 'right');
      else if (alt && !ev.shiftKey && ev.code === 'KeyW') a.closePane();
      else if (alt && !ev.shiftKey && ev.key.startsWith('Arrow')) a.move(ev.key.slice(5).toLowerCase() as 'left');
      else if (alt && !ev.shiftKey && /^Digit[1-9]$/.test(ev.code)) a.tab(Number(ev.code.slice(5)) - 1);
      else if (alt && ev.code === 'PageDown') a.cycle(1);
      else if (alt && ev.code === 'PageUp') a.cycle(-1);
      else if (alt && !ev.shiftKey && ev.code === 'Equal') a.font(1);
      else if (alt && !ev.shiftKey && ev.code === 'Minus') a.font(-1);
      else if (alt && !ev.shiftKey && ev.code === 'Digit0') a.font(0);
      else if (alt && ev.shiftKey && ev.code === 'KeyF') a.find();
      else if (ev.ctrlKey && ev.shiftKey && ev.code === 'KeyF') a.searchTree();
      else if (ev.key === '?' && !ev.ctrlKey && !ev.altKey && !typing(ev.target)) a.help();
      else handled = false;
      if (handled) {
        ev.preventDefault();
        ev.stopPropagation();
      }
    },
    { capture: true, signal },
  );
}

function typing(t: EventTarget | null): boolean {
  const el = t as HTMLElement | null;
  return !!el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || !!el.closest('.xterm'));
}

export function showHelp(): void {
  const dlg = h(
    'dialog',
    { class: 'dialog', 'aria-label': 'Keyboard shortcuts' },
    h('h2', {}, 'Keyboard shortcuts'),
    h('table', { class: 'grid' }, h('tbody', {}, ...SHORTCUTS.map(([k, d]) => h('tr', {}, h('td', {}, h('kbd', {}, k)), h('td', {}, d))))),
    h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => dlg.close() }, 'Close')),
  );
  dlg.addEventListener('close', () => dlg.remove());
  document.body.appendChild(dlg);
  dlg.showModal();
}
