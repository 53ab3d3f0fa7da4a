// Sign-in: "Username", "Password", "Sign in". A wrong password and the login throttle
// (429 with its wait) are said plainly; the button waits out the throttle.
import { api, ApiError, Me } from '../api';
import { h } from './dom';

export function signIn(root: HTMLElement, done: (me: Me) => void, notice?: string): void {
  const user = h('input', { id: 'username', name: 'username', autocomplete: 'username', required: true, spellcheck: 'false' });
  const pass = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'form-error', role: 'alert', id: 'signin-error' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  let timer = 0;
  const wait = (secs: number) => {
    let left = secs;
    button.disabled = true;
    const tick = () => {
      if (left <= 0) {
        window.clearInterval(timer);
        button.disabled = false;
        button.textContent = 'Sign in';
        error.textContent = 'You can try again now.';
        return;
      }
      error.textContent = `Too many failed sign-ins. Try again in ${left} s.`;
      button.textContent = `Sign in (${left} s)`;
      left--;
    };
    tick();
    timer = window.setInterval(tick, 1000);
  };
  const form = h(
    'form',
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'opsgate'),
    h('p', { class: 'muted' }, 'Sign in to the console.'),
    notice ? h('p', { class: 'notice', role: 'status' }, notice) : null,
    h('div', { class: 'field' }, h('label', { for: 'username' }, 'Username'), user),
    h('div', { class: 'field' }, h('label', { for: 'password' }, 'Password'), pass),
    error,
    button,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    button.disabled = true;
    try {
      const me = await api.post<Me>('api/auth/login', { username: user.value, password: pass.value });
      window.clearInterval(timer);
      done(me);
    } catch (e) {
      button.disabled = false;
      if (e instanceof ApiError && e.status === 429) {
        wait(e.retryAfter ?? 60);
      } else if (e instanceof ApiError && e.status === 401) {
        error.textContent = 'Wrong username or password.';
        pass.select();
      } else {
        error.textContent = e instanceof Error ? e.message : String(e);
      }
    }
  });
  root.replaceChildren(h('main', { class: 'signin-page' }, form));
  user.focus();
}
