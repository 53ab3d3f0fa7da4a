// A small popup menu (role=menu): arrow keys move, Enter picks, Escape closes and
// gives focus back to what opened it.
import { h } from './dom';

export type MenuItem = [label: string, action: () => void, danger?: boolean];

let open: HTMLElement | undefined;

export function closeMenu(): void {
  open?.remove();
  open = undefined;
}

export function showMenu(items: MenuItem[], at: { x: number; y: number }, returnFocus?: HTMLElement): void {
  closeMenu();
  const buttons = items.map(([label, fn, danger]) =>
    h(
      'button',
      {
        type: 'button',
        role: 'menuitem',
        class: danger ? 'danger' : '',
        tabindex: -1,
        onclick: () => {
          closeMenu();
          returnFocus?.focus();
          fn();
        },
      },
      label,
    ),
  );
  const menu = h('div', { class: 'menu', role: 'menu' }, ...buttons);
  menu.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(document.activeElement as HTMLButtonElement);
    if (ev.key === 'ArrowDown') buttons[(i + 1) % buttons.length].focus();
    else if (ev.key === 'ArrowUp') buttons[(i - 1 + buttons.length) % buttons.length].focus();
    else if (ev.key === 'Escape' || ev.key === 'Tab') {
      closeMenu();
      returnFocus?.focus();
    } else return;
    ev.preventDefault();
  });
  document.body.appendChild(menu);
  const r = menu.getBoundingClientRect();
  menu.style.left = `${Math.min(at.x, window.innerWidth - r.width - 4)}px`;
  menu.style.top = `${Math.min(at.y, window.innerHeight - r.height - 4)}px`;
  open = menu;
  buttons[0]?.focus();
  const away = (ev: MouseEvent) => {
    if (!menu.contains(ev.target as Node)) {
      closeMenu();
      window.removeEventListener('mousedown', away, true);
    }
  };
  window.addEventListener('mousedown', away, true);
}
