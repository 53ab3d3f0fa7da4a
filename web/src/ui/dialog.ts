// Modal dialogs on the native <dialog> element (focus trap, Escape, top layer for free).
// A form dialog keeps what was typed when the request fails and shows why.

import { ApiError } from '../api';
import { h } from './dom';

export interface Field {
  name: string;
  label: string;
  type?: 'text' | 'password' | 'number' | 'select' | 'textarea';
  value?: string;
  options?: [string, string][];
  required?: boolean;
  help?: string;
  placeholder?: string;
  autocomplete?: string;
}

export type Values = Record<string, string>;

export function formDialog(
  title: string,
  fields: Field[],
  submitLabel: string,
  submit: (v: Values) => Promise<void>,
  intro?: string,
): void {
  const error = h('p', { class: 'form-error', role: 'alert' });
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>();
  const rows = fields.map((f) => {
    const id = `f-${f.name}-${Math.random().toString(36).slice(2, 8)}`;
    let input: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;
    if (f.type === 'select') {
      input = h('select', { id, name: f.name }, ...(f.options ?? []).map(([v, l]) => h('option', { value: v }, l)));
      input.value = f.value ?? f.options?.[0]?.[0] ?? '';
    } else if (f.type === 'textarea') {
      input = h('textarea', { id, name: f.name, rows: 6, placeholder: f.placeholder, spellcheck: 'false' });
      input.value = f.value ?? '';
    } else {
      input = h('input', {
        id,
        name: f.name,
        type: f.type ?? 'text',
        placeholder: f.placeholder,
        autocomplete: f.autocomplete ?? 'off',
        spellcheck: 'false',
      });
      input.value = f.value ?? '';
    }
    if (f.required) input.required = true;
    inputs.set(f.name, input);
    return h('div', { class: 'field' }, h('label', { for: id }, f.label), input, f.help ? h('small', {}, f.help) : null);
  });
  const submitBtn = h('button', { type: 'submit', class: 'primary' }, submitLabel);
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', {}, title),
    intro ? h('p', { class: 'muted' }, intro) : null,
    ...rows,
    error,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'),
      submitBtn,
    ),
  );
  const dlg = h('dialog', { class: 'dialog', 'aria-label': title }, form);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const values: Values = {};
    for (const [k, el] of inputs) values[k] = el.value;
    submitBtn.disabled = true;
    error.textContent = '';
    try {
      await submit(values);
      dlg.close();
    } catch (e) {
      error.textContent = e instanceof ApiError ? e.message : String(e);
    } finally {
      submitBtn.disabled = false;
    }
  });
  dlg.addEventListener('close', () => dlg.remove());
  document.body.appendChild(dlg);
  dlg.showModal();
}

/** Asks once before a destructive action; says what will go. */
export function confirmDialog(title: string, message: string, confirmLabel: string): Promise<boolean> {
  return new Promise((resolve) => {
    let answer = false;
    const dlg = h(
      'dialog',
      { class: 'dialog', 'aria-label': title },
      h('h2', {}, title),
      h('p', {}, message),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'),
        h('button', { type: 'button', class: 'danger', onclick: () => ((answer = true), dlg.close()) }, confirmLabel),
      ),
    );
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(answer);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}
