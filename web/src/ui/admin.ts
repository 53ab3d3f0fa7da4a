// Admin: users and roles, and the audit log with filters.
import { api, AuditEvent, Role, User } from '../api';
import { confirmDialog, formDialog } from './dialog';
import { clear, fmtTime, h, toast } from './dom';

const ROLES: [Role, string][] = [
  ['operator', 'operator: terminals, tools, jobs'],
  ['viewer', 'viewer: read-only'],
  ['admin', 'admin: everything'],
];

export class AdminPage {
  readonly el: HTMLElement;
  private body: HTMLElement;
  private nav: HTMLElement;
  private tab: 'users' | 'audit' = 'users';

  constructor(private me: string) {
    this.nav = h('div', { class: 'subnav', role: 'tablist', 'aria-label': 'Admin sections' });
    this.body = h('div', { class: 'page-body' });
    this.el = h('section', { class: 'page', 'aria-label': 'Admin' }, h('h1', {}, 'Admin'), this.nav, this.body);
  }

  show(tab = this.tab): void {
    this.tab = tab;
    clear(
      this.nav,
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'users'), onclick: () => this.show('users') }, 'Users'),
      h('button', { type: 'button', role: 'tab', 'aria-selected': String(tab === 'audit'), onclick: () => this.show('audit') }, 'Audit log'),
    );
    clear(this.body, h('p', { class: 'muted' }, 'Loading…'));
    (tab === 'users' ? this.users() : this.audit()).catch((e) =>
      clear(this.body, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message)),
    );
  }

  private async users(): Promise<void> {
    const users = await api.get<User[]>('api/users');
    const refresh = () => this.show('users');
    clear(
      this.body,
      h('p', { class: 'muted' }, 'Changing a role or password ends that user’s open sockets and terminals.'),
      h(
        'div',
        { class: 'toolbar' },
        h(
          'button',
          {
            type: 'button',
            class: 'primary',
            onclick: () =>
              formDialog(
                'New user',
                [
                  { name: 'username', label: 'Username', required: true },
                  { name: 'password', label: 'Password', type: 'password', required: true, autocomplete: 'new-password' },
                  { name: 'role', label: 'Role', type: 'select', value: 'operator', options: ROLES },
                ],
                'Create',
                async (v) => {
                  await api.post('api/users', { username: v.username.trim(), password: v.password, role: v.role });
                  refresh();
                },
              ),
          },
          'New user',
        ),
      ),
      h(
        'table',
        { class: 'grid' },
        h('thead', {}, h('tr', {}, ...['User', 'Role', 'Created', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...users.map((u) => {
            const role = h('select', { 'aria-label': `Role of ${u.username}` }, ...ROLES.map(([r]) => h('option', { value: r }, r)));
            role.value = u.role;
            role.addEventListener('change', async () => {
              try {
                await api.put(`api/users/${encodeURIComponent(u.username)}`, { role: role.value });
                toast(`${u.username} is now ${role.value}.`);
              } catch (e) {
                role.value = u.role;
                toast((e as Error).message, 'error');
              }
            });
            return h(
              'tr',
              {},
              h('td', {}, u.username, u.username === this.me ? h('span', { class: 'muted' }, ' (you)') : null),
              h('td', {}, role),
              h('td', {}, fmtTime(u.created_at)),
              h(
                'td',
                { class: 'row-actions' },
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'small',
                    'aria-label': `Set the password of ${u.username}`,
                    onclick: () =>
                      formDialog(`Password of ${u.username}`, [{ name: 'password', label: 'New password', type: 'password', required: true, autocomplete: 'new-password' }], 'Set', async (v) => {
                        await api.put(`api/users/${encodeURIComponent(u.username)}`, { password: v.password });
                        toast('Password changed.');
                      }),
                  },
                  'Password…',
                ),
                h(
                  'button',
                  {
                    type: 'button',
                    class: 'small',
                    'aria-label': `Delete ${u.username}`,
                    onclick: async () => {
                      if (!(await confirmDialog(`Delete ${u.username}?`, `${u.username}, their inventory and credentials are removed and their terminals end.`, 'Delete'))) return;
                      try {
                        await api.del(`api/users/${encodeURIComponent(u.username)}`);
                        refresh();
                      } catch (e) {
                        toast((e as Error).message, 'error');
                      }
                    },
                  },
                  'Delete',
                ),
              ),
            );
          }),
        ),
      ),
    );
  }

  private async audit(): Promise<void> {
    const actor = h('input', { id: 'audit-actor', type: 'search', placeholder: 'any user', spellcheck: 'false' });
    const action = h('input', { id: 'audit-action', type: 'search', placeholder: 'e.g. login, channel.open', spellcheck: 'false' });
    const text = h('input', { id: 'audit-text', type: 'search', placeholder: 'target, address, detail', spellcheck: 'false' });
    const since = h('input', { id: 'audit-since', type: 'datetime-local' });
    const until = h('input', { id: 'audit-until', type: 'datetime-local' });
    const rows = h('tbody', {});
    const more = h('button', { type: 'button', hidden: true }, 'Load older');
    let events: AuditEvent[] = [];
    let next: number | null = null;
    const render = () => {
      const a = action.value.trim().toLowerCase();
      const t = text.value.trim().toLowerCase();
      // The gateway filters by user and pages by sequence; time and text filter what
      // is loaded ("Load older" reaches further back).
      const from = since.value ? new Date(since.value).getTime() / 1000 : -Infinity;
      const to = until.value ? new Date(until.value).getTime() / 1000 : Infinity;
      const shown = events.filter(
        (e) =>
          e.at >= from &&
          e.at <= to &&
          (!a || e.action.toLowerCase().includes(a)) &&
          (!t || [e.target, e.ip, e.detail].some((x) => x?.toLowerCase().includes(t))),
      );
      clear(
        rows,
        ...shown.map((e) =>
          h('tr', {}, h('td', {}, fmtTime(e.at)), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.target ?? ''), h('td', {}, e.ip ?? ''), h('td', {}, e.detail ?? '')),
        ),
      );
      if (shown.length === 0) rows.appendChild(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No events match.')));
      more.hidden = next === null;
    };
    const load = async (reset: boolean) => {
      const q = new URLSearchParams({ limit: '200' });
      if (actor.value.trim()) q.set('actor', actor.value.trim());
      if (!reset && next !== null) q.set('before', String(next));
      const r = await api.get<{ events: AuditEvent[]; next_before: number | null }>(`api/audit?${q}`);
      events = reset ? r.events : [...events, ...r.events];
      next = r.next_before;
      render();
    };
    let debounce = 0;
    actor.addEventListener('input', () => {
      window.clearTimeout(debounce);
      debounce = window.setTimeout(() => void load(true), 250);
    });
    action.addEventListener('input', render);
    text.addEventListener('input', render);
    since.addEventListener('change', render);
    until.addEventListener('change', render);
    more.addEventListener('click', () => void load(false));
    clear(
      this.body,
      h(
        'div',
        { class: 'filters' },
        h('div', { class: 'field' }, h('label', { for: 'audit-actor' }, 'User'), actor),
        h('div', { class: 'field' }, h('label', { for: 'audit-action' }, 'Action'), action),
        h('div', { class: 'field' }, h('label', { for: 'audit-text' }, 'Contains'), text),
        h('div', { class: 'field' }, h('label', { for: 'audit-since' }, 'From'), since),
        h('div', { class: 'field' }, h('label', { for: 'audit-until' }, 'Until'), until),
      ),
      h('table', { class: 'grid audit' }, h('thead', {}, h('tr', {}, ...['Time', 'User', 'Action', 'Target', 'Address', 'Detail'].map((c) => h('th', { scope: 'col' }, c)))), rows),
      more,
    );
    await load(true);
  }
}
