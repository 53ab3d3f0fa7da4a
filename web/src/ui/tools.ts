// Tools: the registry (GET /api/tools), a form generated from the chosen tool's
// parameter schema with inline checks (mirroring the gateway's; its 400 message goes
// next to the field it names), a run started by REST and followed on a `tool` channel
// (live output, then the structured result as a table), and the execution history.

import { api, ApiError, Role } from '../api';
import type { Connection } from '../connection';
import { checkParam, paramOfError, ParamSchema } from '../toolform';
import { clear, fmtTime, h, toast } from './dom';
import { chip, fmtDuration, OutputBox, resultTable, Stream } from './live';

/** A tool as `GET /api/tools` describes it. */
export interface ToolInfo {
  name: string;
  description: string;
  category: string;
  params: { properties: Record<string, ParamSchema>; required: string[] };
  result_schema: unknown;
  enabled: boolean;
  available: boolean;
  admin_only: boolean;
  timeout_secs: number;
}

/** An execution as `GET /api/executions` lists it. */
export interface Execution {
  id: string;
  tool: string;
  params: Record<string, unknown>;
  user: string;
  state: string;
  created_at: number;
  ended_at?: number | null;
  exit_code?: number | null;
  message?: string | null;
  result?: unknown;
  output_bytes?: number;
}

const DONE = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

interface FieldCtl {
  name: string;
  schema: ParamSchema;
  required: boolean;
  input: HTMLInputElement | HTMLSelectElement;
  error: HTMLElement;
}

export class ToolsPage {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private formBox: HTMLElement;
  private runBox: HTMLElement;
  private history: HTMLElement;
  private tools: ToolInfo[] = [];
  private current?: ToolInfo;
  private fields: FieldCtl[] = [];
  private stream?: Stream;
  private out = new OutputBox('Tool output');
  private runHead = h('div', { class: 'run-head' });
  private result = h('div', { class: 'run-result' });
  private running?: string;

  constructor(
    private conn: Connection,
    public role: Role,
  ) {
    this.list = h('nav', { class: 'tool-list', 'aria-label': 'Tools' });
    this.formBox = h('div', { class: 'tool-form' });
    this.runBox = h('section', { class: 'run', 'aria-label': 'Run' }, this.runHead, this.out.el, this.result);
    this.runBox.hidden = true;
    this.history = h('div', {});
    this.el = h(
      'section',
      { class: 'page', 'aria-label': 'Tools' },
      h('h1', {}, 'Tools'),
      h('div', { class: 'tools-layout' }, this.list, h('div', { class: 'tool-main' }, this.formBox, this.runBox)),
      h('h2', {}, 'History'),
      this.history,
    );
  }

  async show(): Promise<void> {
    try {
      const r = await api.get<{ tools: ToolInfo[] }>('api/tools');
      this.tools = r.tools;
    } catch (e) {
      clear(this.list, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    this.renderList();
    if (!this.current && this.tools.length > 0) this.pick(this.tools.find((t) => t.available && t.enabled) ?? this.tools[0]);
    void this.loadHistory();
  }

  private renderList(): void {
    const cats = [...new Set(this.tools.map((t) => t.category))];
    clear(
      this.list,
      ...cats.map((c) =>
        h(
          'div',
          { class: 'tool-cat' },
          h('div', { class: 'folder-head static' }, c),
          ...this.tools
            .filter((t) => t.category === c)
            .map((t) =>
              h(
                'button',
                {
                  type: 'button',
                  class: 'tool-item',
                  'aria-current': this.current?.name === t.name ? 'true' : undefined,
                  onclick: () => this.pick(t),
                  title: t.description,
                },
                h('span', {}, t.name),
                !t.available ? h('span', { class: 'muted' }, 'not installed') : !t.enabled ? h('span', { class: 'muted' }, 'disabled') : null,
              ),
            ),
        ),
      ),
    );
  }

  /** Selects a tool and builds its form. */
  pick(t: ToolInfo): void {
    this.current = t;
    this.renderList();
    this.fields = Object.entries(t.params.properties).map(([name, schema]) => {
      const id = `tp-${t.name}-${name}`;
      let input: HTMLInputElement | HTMLSelectElement;
      if (schema.enum) {
        input = h('select', { id, name }, ...schema.enum.map((v) => h('option', { value: v }, v)));
        if (schema.default !== undefined) input.value = String(schema.default);
      } else if (schema.type === 'boolean') {
        input = h('input', { id, name, type: 'checkbox', checked: schema.default === true });
      } else {
        input = h('input', {
          id,
          name,
          type: schema.type === 'integer' ? 'number' : 'text',
          min: schema.minimum,
          max: schema.maximum,
          placeholder: schema.default !== undefined ? `default ${schema.default}` : '',
          spellcheck: 'false',
          autocomplete: 'off',
        });
      }
      const error = h('span', { class: 'field-error', id: `${id}-err`, 'aria-live': 'polite' });
      input.setAttribute('aria-describedby', `${id}-help ${id}-err`);
      return { name, schema, required: t.params.required.includes(name), input, error };
    });
    for (const f of this.fields) {
      f.input.addEventListener('input', () => this.checkField(f, false));
      f.input.addEventListener('blur', () => this.checkField(f, true));
    }
    const runBtn = h('button', { type: 'submit', class: 'primary', disabled: !t.available || !t.enabled || this.role === 'viewer' }, 'Run');
    const formError = h('p', { class: 'form-error', role: 'alert' });
    const form = h(
      'form',
      { class: 'tool-fields', 'aria-label': `${t.name} parameters` },
      h('h2', {}, t.name, ' ', h('span', { class: 'muted' }, t.description)),
      h(
        'div',
        { class: 'field-grid' },
        ...this.fields.map((f) => {
          if (f.required) f.input.setAttribute('aria-required', 'true');
          const help = [f.required ? 'required' : '', f.schema.description, f.schema.minimum !== undefined ? `${f.schema.minimum}–${f.schema.maximum}` : '', f.schema.format ?? ''].filter(Boolean).join(' · ');
          return h(
            'div',
            { class: 'field' },
            h('label', { for: f.input.id }, f.name),
            f.input,
            h('small', { id: `${f.input.id}-help` }, help),
            f.error,
          );
        }),
      ),
      h('div', { class: 'toolbar' }, runBtn, h('span', { class: 'muted' }, `time limit ${t.timeout_secs} s`, t.admin_only ? ' · admins only' : '')),
      formError,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.run(t, formError, runBtn);
    });
    clear(this.formBox, form);
  }

  private checkField(f: FieldCtl, final: boolean): ReturnType<typeof checkParam> {
    const raw = f.input instanceof HTMLInputElement && f.input.type === 'checkbox' ? f.input.checked : f.input.value;
    const c = checkParam(f.schema, raw, f.required);
    // While typing only clear errors; say what is wrong when the field is left or sent.
    if ('error' in c) {
      if (final) this.setError(f, c.error);
    } else this.setError(f, '');
    return c;
  }

  private setError(f: FieldCtl, msg: string): void {
    f.error.textContent = msg;
    f.input.setAttribute('aria-invalid', msg ? 'true' : 'false');
  }

  private async run(t: ToolInfo, formError: HTMLElement, btn: HTMLButtonElement): Promise<void> {
    formError.textContent = '';
    const params: Record<string, unknown> = {};
    let bad: FieldCtl | undefined;
    for (const f of this.fields) {
      const c = this.checkField(f, true);
      if ('error' in c) bad ??= f;
      else if ('value' in c) params[f.name] = c.value;
    }
    if (bad) {
      bad.input.focus();
      return;
    }
    btn.disabled = true;
    try {
      const r = await api.post<{ id: string }>(`api/tools/${encodeURIComponent(t.name)}/execute`, { params });
      this.follow(r.id, t.name);
      void this.loadHistory();
    } catch (e) {
      const msg = (e as Error).message;
      const named = e instanceof ApiError && e.code === 'invalid_params' ? paramOfError(msg) : undefined;
      const f = named && this.fields.find((x) => x.name === named.param);
      if (f && named) {
        this.setError(f, named.reason);
        f.input.focus();
      } else formError.textContent = msg;
    } finally {
      btn.disabled = false;
    }
  }

  /** Shows execution `id`: its output from the first byte, then live, then the result. */
  follow(id: string, tool: string): void {
    this.stream?.close();
    this.out.reset();
    clear(this.result);
    this.runBox.hidden = false;
    this.running = id;
    const state = h('span', {}, chip('running'));
    const cancel = h('button', { type: 'button', class: 'danger small', onclick: () => void this.cancel(id) }, 'Cancel');
    const info = h('span', { class: 'muted' });
    clear(this.runHead, h('strong', {}, tool), state, info, h('span', { class: 'spacer' }), cancel, h('button', { type: 'button', class: 'small', onclick: () => this.closeRun() }, 'Close'));
    this.stream = new Stream(this.conn, { kind: 'tool', execution_id: id }, {
      text: (s) => this.out.append(s),
      progress: (e) => {
        const st = String(e.state ?? '');
        if (st) clear(state, chip(st));
        if (DONE.has(st)) {
          cancel.hidden = true;
          info.textContent = [e.exit_code !== undefined ? `exit ${e.exit_code}` : '', fmtDuration(e.duration_ms as number), (e.message as string) ?? ''].filter(Boolean).join(' · ');
          clear(this.result, e.result !== undefined && e.result !== null ? resultTable(e.result) : null);
          if (this.running === id) this.running = undefined;
          void this.loadHistory();
        }
      },
      error: (code, message) => {
        info.textContent = `${code}: ${message}`;
        cancel.hidden = true;
      },
    });
    this.runBox.dataset.execution = id;
  }

  private closeRun(): void {
    this.stream?.close();
    this.stream = undefined;
    this.runBox.hidden = true;
  }

  private async cancel(id: string): Promise<void> {
    try {
      await api.del(`api/executions/${encodeURIComponent(id)}`);
    } catch (e) {
      toast((e as Error).message, 'error');
    }
    void this.loadHistory();
  }

  async loadHistory(): Promise<void> {
    let r: { executions: Execution[]; total: number };
    try {
      r = await api.get('api/executions?limit=25');
    } catch (e) {
      clear(this.history, h('p', { class: 'form-error', role: 'alert' }, (e as Error).message));
      return;
    }
    const params = (p: Record<string, unknown>) =>
      Object.entries(p ?? {})
        .map(([k, v]) => `${k}=${v}`)
        .join(' ');
    clear(
      this.history,
      h(
        'table',
        { class: 'grid', 'aria-label': 'Executions' },
        h('thead', {}, h('tr', {}, ...['Started', 'Tool', 'Parameters', 'User', 'State', 'Took', ''].map((c) => h('th', { scope: 'col' }, c)))),
        h(
          'tbody',
          {},
          ...r.executions.map((e) =>
            h(
              'tr',
              {},
              h('td', { class: 'nowrap' }, fmtTime(e.created_at)),
              h('td', {}, e.tool),
              h('td', { class: 'mono' }, params(e.params)),
              h('td', {}, e.user),
              h('td', {}, chip(e.state)),
              h('td', { class: 'nowrap' }, e.ended_at ? `${e.ended_at - e.created_at} s` : ''),
              h(
                'td',
                { class: 'row-actions' },
                h('button', { type: 'button', class: 'small', 'aria-label': `Show ${e.tool} run ${e.id}`, onclick: () => this.follow(e.id, e.tool) }, 'Show'),
                !DONE.has(e.state) && this.role !== 'viewer'
                  ? h('button', { type: 'button', class: 'small danger', 'aria-label': `Cancel ${e.tool} run ${e.id}`, onclick: () => void this.cancel(e.id) }, 'Cancel')
                  : null,
              ),
            ),
          ),
          r.executions.length === 0 ? h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No runs yet.')) : null,
        ),
      ),
      r.total > r.executions.length ? h('p', { class: 'muted' }, `${r.executions.length} of ${r.total} shown`) : null,
    );
  }
}
