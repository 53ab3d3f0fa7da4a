// Entry point: the CSP nonce shim first (before anything creates <style>), then either
// the console (a valid login cookie) or the sign-in form.
import './csp';
import '@xterm/xterm/css/xterm.css';
import './style.css';
import { api, ApiError, Me } from './api';
import { ConsoleApp } from './ui/app';
import { signIn } from './ui/signin';
import { h } from './ui/dom';

const root = document.getElementById('app')!;
let current: ConsoleApp | undefined;

function startConsole(me: Me): void {
  current = new ConsoleApp(root, me, (notice) => {
    current = undefined;
    // A fresh page for the next login: nothing of this one stays in memory.
    signIn(root, (m) => startConsole(m), notice);
  });
  void current.start();
}

async function boot(): Promise<void> {
  try {
    const me = await api.get<Me>('api/auth/status');
    startConsole(me);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signIn(root, (m) => startConsole(m));
    else
      root.replaceChildren(
        h('main', { class: 'signin-page' }, h('p', { role: 'alert' }, `The gateway cannot be reached: ${(e as Error).message}`), h('button', { type: 'button', onclick: () => location.reload() }, 'Retry')),
      );
  }
}

// Test hook for the end-to-end suite (enabled by the test only): reads terminals'
// buffers and the socket state the way a person would see them.
const echoSeen: Record<string, number> = {};
if (localStorage.getItem('opsgate.testHook') === '1') {
  (window as unknown as Record<string, unknown>).__opsgate = {
    socket: () => current?.conn.state ?? 'none',
    drop: () => current?.conn.drop(),
    terms: () =>
      current?.ws.all().map((v) => ({
        key: v.key,
        title: v.spec.title,
        state: v.state,
        id: v.channel?.id,
        cols: v.term.cols,
        rows: v.term.rows,
        received: v.channel?.output.received ?? 0,
      })) ?? [],
    text: (key?: string) => {
      const views = current?.ws.all() ?? [];
      const v = key ? views.find((x) => x.key === key) : current?.ws.active?.focused;
      return v?.text() ?? '';
    },
    paste: (text: string) => current?.ws.active?.focused.term.paste(text),
    /** Records the wall-clock time (ms) at which each of `chars` first shows in `title`'s cursor line. */
    echoProbe: (title: string, chars: string) => {
      const v = current?.ws.all().find((x) => x.spec.title === title);
      v?.term.onWriteParsed(() => {
        const b = v.term.buffer.active;
        const line = b.getLine(b.baseY + b.cursorY)?.translateToString(true) ?? '';
        for (const c of chars) if (!(c in echoSeen) && line.includes(c)) echoSeen[c] = Date.now();
      });
    },
    echoSeen: () => echoSeen,
    reloadTree: () => current?.sidebar.reload(),
    inputQueued: () => {
      const c = current?.ws.active?.focused.channel;
      return c ? { queued: c.input.queued, inFlight: c.input.inFlight, window: c.input.window } : null;
    },
  };
}

void boot();
