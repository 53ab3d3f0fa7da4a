// A sparkline in plain SVG (no chart library: a dashboard needs a line and a number).
// Elements and attributes only, no inline styles, so the strict CSP holds.

const NS = 'http://www.w3.org/2000/svg';

/** Bounded history of one figure: at most `cap` samples (the oldest go). */
export class Series {
  readonly values: number[] = [];
  constructor(readonly cap = 120) {}
  push(v: number): void {
    this.values.push(Number.isFinite(v) ? v : 0);
    if (this.values.length > this.cap) this.values.shift();
  }
  get last(): number | undefined {
    return this.values[this.values.length - 1];
  }
}

/** Draws `series` (one or two lines) into a fresh SVG, y from 0 to `max` (or the data's max). */
export function sparkline(label: string, series: Series[], max?: number, w = 240, hgt = 48): SVGSVGElement {
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${hgt}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  const top = max ?? Math.max(1, ...series.flatMap((s) => s.values));
  series.forEach((s, k) => {
    if (s.values.length < 2) return;
    // Few samples still span a good part of the chart (a line, not a dot at the edge);
    // once there are enough, the newest is at the right and the window slides.
    const step = w / (Math.min(s.cap, Math.max(s.values.length, 12)) - 1);
    const x0 = w - (s.values.length - 1) * step;
    const pts = s.values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(hgt - 2 - (Math.min(v, top) / top) * (hgt - 4)).toFixed(1)}`);
    if (k === 0) {
      const area = document.createElementNS(NS, 'polygon');
      area.setAttribute('points', `${x0.toFixed(1)},${hgt} ${pts.join(' ')} ${w},${hgt}`);
      area.setAttribute('class', 'spark-area');
      svg.appendChild(area);
    }
    const line = document.createElementNS(NS, 'polyline');
    line.setAttribute('points', pts.join(' '));
    line.setAttribute('class', `spark-line l${k}`);
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    svg.appendChild(line);
  });
  return svg;
}
