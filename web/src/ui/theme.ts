// Light and dark, following the system setting. Terminal palettes keep contrast in
// both: the light one darkens yellow/cyan/white, which are unreadable on white as-is.
import type { ITheme } from '@xterm/xterm';

const dark: ITheme = {
  background: '#15171b',
  foreground: '#d7dae0',
  cursor: '#d7dae0',
  cursorAccent: '#15171b',
  selectionBackground: '#3a4a63',
  black: '#1d2026',
  red: '#f07178',
  green: '#a6d189',
  yellow: '#e5c07b',
  blue: '#7aa2f7',
  magenta: '#c678dd',
  cyan: '#56b6c2',
  white: '#d7dae0',
  brightBlack: '#6b7280',
  brightRed: '#ff8f96',
  brightGreen: '#c3e88d',
  brightYellow: '#ffd580',
  brightBlue: '#9ab8ff',
  brightMagenta: '#e0a3f0',
  brightCyan: '#89ddff',
  brightWhite: '#ffffff',
};

const light: ITheme = {
  background: '#fbfbfa',
  foreground: '#1f2328',
  cursor: '#1f2328',
  cursorAccent: '#fbfbfa',
  selectionBackground: '#b6d3ff',
  black: '#1f2328',
  red: '#c0262d',
  green: '#1a7f37',
  yellow: '#8a6100',
  blue: '#0b5cd5',
  magenta: '#8c3fb0',
  cyan: '#0a7285',
  white: '#6e7781',
  brightBlack: '#57606a',
  brightRed: '#d1242f',
  brightGreen: '#2da44e',
  brightYellow: '#9a6700',
  brightBlue: '#218bff',
  brightMagenta: '#a475f9',
  brightCyan: '#1b7c83',
  brightWhite: '#8c959f',
};

const query = window.matchMedia('(prefers-color-scheme: dark)');

export function terminalTheme(): ITheme {
  return query.matches ? dark : light;
}

export function onThemeChange(signal: AbortSignal, fn: () => void): void {
  query.addEventListener('change', fn, { signal });
}

const FONT_KEY = 'opsgate.fontSize';
export function fontSize(): number {
  const n = Number(localStorage.getItem(FONT_KEY));
  return n >= 8 && n <= 32 ? n : 13;
}
export function setFontSize(n: number): number {
  const v = Math.max(8, Math.min(32, n));
  localStorage.setItem(FONT_KEY, String(v));
  return v;
}
