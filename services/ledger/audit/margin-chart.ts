import type { MarginReport, MarginRow } from './margin.js';

/**
 * The margin report as an SVG chart, one panel per currency: for each group a bar of what it
 * earned (recognised revenue, with breakage stacked on top) beside a bar of what it cost
 * upstream, and its margin as a labelled point joined by a line, so a glance shows which days,
 * models or packages pay for themselves. Plain SVG 1.1, no scripts or external fonts.
 */
const colors = { revenue: '#2e7d32', breakage: '#81c784', cost: '#c62828', margin: '#1565c0', grid: '#e0e0e0', text: '#212121', muted: '#616161' };

export function marginChartSvg(report: MarginReport, title = `Margin by ${report.by}`): string {
  const currencies = [...new Set(report.rows.map((r) => r.currency))].filter((c) => c !== '—');
  const groupsMax = 40;
  const panels = currencies.map((c) => report.rows.filter((r) => r.currency === c).slice(0, groupsMax));
  const left = 90;
  const right = 30;
  const panelHeight = 300;
  const top = 100;
  const labelSpace = 90;
  const groups = Math.max(1, ...panels.map((p) => p.length));
  const width = Math.max(760, left + right + 64 * groups);
  // Groups share the plot's width, each no wider than 140 px.
  const slot = Math.min(140, (width - left - right) / groups);
  const height = top + panels.length * (panelHeight + labelSpace + 40) + 20;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${left}" y="30" font-size="20" font-weight="bold" fill="${colors.text}">${esc(title)}</text>`,
    `<text x="${left}" y="52" font-size="12" fill="${colors.muted}">${esc(subtitle(report))}</text>`,
  );
  const legend = [
    ['revenue', 'recognised revenue'],
    ['breakage', 'breakage'],
    ['cost', 'upstream cost'],
    ['margin', 'margin'],
  ] as const;
  legend.forEach(([key, label], i) => {
    const x = left + i * 170;
    out.push(
      key === 'margin'
        ? `<circle cx="${x + 6}" cy="72" r="5" fill="${colors.margin}"/>`
        : `<rect x="${x}" y="66" width="12" height="12" fill="${colors[key]}"/>`,
      `<text x="${x + 18}" y="77" font-size="12" fill="${colors.text}">${label}</text>`,
    );
  });
  panels.forEach((rows, p) => {
    const currency = currencies[p]!;
    const y0 = top + p * (panelHeight + labelSpace + 40) + 20;
    const values = rows.flatMap((r) => [r.revenueMicros + r.breakageMicros, r.costMicros, r.marginMicros]);
    const max = Math.max(1, ...values.map(Number));
    const min = Math.min(0, ...values.map(Number));
    const { ticks, lo, hi } = niceTicks(min, max);
    const y = (v: number) => y0 + panelHeight - ((v - lo) / (hi - lo)) * panelHeight;
    out.push(`<text x="${left}" y="${y0 - 6}" font-size="13" font-weight="bold" fill="${colors.text}">${esc(currency)}</text>`);
    for (const t of ticks) {
      out.push(
        `<line x1="${left}" x2="${width - right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="${t === 0 ? '#9e9e9e' : colors.grid}" stroke-width="1"/>`,
        `<text x="${left - 8}" y="${(y(t) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="${colors.muted}">${esc(moneyLabel(t, currency))}</text>`,
      );
    }
    const points: string[] = [];
    rows.forEach((r, i) => {
      const bar = Math.min(40, (slot - 16) / 2);
      const x = left + i * slot + (slot - 2 * bar) / 2;
      const rev = Number(r.revenueMicros);
      const brk = Number(r.breakageMicros);
      const cost = Number(r.costMicros);
      out.push(rect(x, y(Math.max(rev, 0)), bar, Math.abs(y(0) - y(rev)), colors.revenue, `${r.group}: revenue ${moneyLabel(rev, currency)}`));
      if (brk !== 0) out.push(rect(x, y(Math.max(rev, 0) + Math.max(brk, 0)), bar, Math.abs(y(0) - y(brk)), colors.breakage, `${r.group}: breakage ${moneyLabel(brk, currency)}`));
      out.push(rect(x + bar, y(Math.max(cost, 0)), bar, Math.abs(y(0) - y(cost)), colors.cost, `${r.group}: upstream cost ${moneyLabel(cost, currency)}`));
      const mx = x + bar;
      const my = y(Number(r.marginMicros));
      points.push(`${mx.toFixed(1)},${my.toFixed(1)}`);
      const earned = Number(r.revenueMicros + r.breakageMicros);
      const percent = earned !== 0 ? ` (${((Number(r.marginMicros) / earned) * 100).toFixed(1)} %)` : '';
      out.push(
        `<text x="${(x + bar / 2).toFixed(1)}" y="${(y(Math.max(earned, 0)) - 4).toFixed(1)}" font-size="10" text-anchor="middle" fill="${colors.revenue}">${esc(short(earned))}</text>`,
        `<text x="${(x + 1.5 * bar).toFixed(1)}" y="${(y(Math.max(cost, 0)) - 4).toFixed(1)}" font-size="10" text-anchor="middle" fill="${colors.cost}">${esc(short(cost))}</text>`,
        `<circle cx="${mx.toFixed(1)}" cy="${my.toFixed(1)}" r="4.5" fill="${colors.margin}" stroke="#ffffff" stroke-width="1.5"><title>${esc(`${r.group}: margin ${moneyLabel(Number(r.marginMicros), currency)}${percent}`)}</title></circle>`,
        `<text x="${(mx + 7).toFixed(1)}" y="${(my + 14).toFixed(1)}" font-size="10" fill="${colors.margin}">${esc(short(Number(r.marginMicros)) + percent)}</text>`,
        `<text transform="translate(${(mx + 4).toFixed(1)},${y0 + panelHeight + 12}) rotate(45)" font-size="11" fill="${colors.text}">${esc(trim(r.group))}</text>`,
      );
    });
    // Days are a sequence: their margins are joined by a line; models and packages are not.
    if (report.by === 'day' && points.length > 1) out.push(`<polyline points="${points.join(' ')}" fill="none" stroke="${colors.margin}" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    if (rows.length === 0) out.push(`<text x="${left + 10}" y="${y0 + panelHeight / 2}" font-size="14" fill="${colors.muted}">no revenue or cost in this period</text>`);
  });
  if (panels.length === 0) out.push(`<text x="${left}" y="${top + 60}" font-size="14" fill="${colors.muted}">no revenue or cost in this period</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function subtitle(r: MarginReport): string {
  const period = `${r.from ? r.from.toISOString().slice(0, 10) : 'start'} → ${r.to ? r.to.toISOString().slice(0, 10) : 'now'}`;
  const totals = r.totals.map((t: MarginRow) => `${t.currency}: margin ${moneyLabel(Number(t.marginMicros), t.currency)} on ${moneyLabel(Number(t.revenueMicros + t.breakageMicros), t.currency)}`);
  return `${period} · entries ${r.fromSeq}–${r.toSeq} · ${totals.join(' · ')}`;
}

function rect(x: number, y: number, w: number, h: number, fill: string, title: string): string {
  return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${w.toFixed(1)}" height="${Math.max(h, 0).toFixed(1)}" fill="${fill}"><title>${esc(title)}</title></rect>`;
}

function niceTicks(min: number, max: number): { ticks: number[]; lo: number; hi: number } {
  const span = max - min || 1;
  const step0 = span / 5;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? 10 * mag;
  const lo = Math.floor(min / step) * step;
  const hi = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let t = lo; t <= hi + step / 2; t += step) ticks.push(Math.round(t));
  return { ticks, lo, hi: hi === lo ? lo + step : hi };
}

function moneyLabel(micros: number, currency: string): string {
  const units = micros / 1_000_000;
  const symbol = currency === 'USD' ? '$' : currency === 'EUR' ? '€' : currency === 'GBP' ? '£' : `${currency} `;
  const a = Math.abs(units);
  return `${units < 0 ? '−' : ''}${symbol}${a.toLocaleString('en-US', { maximumFractionDigits: a < 1 && a > 0 ? 4 : 2, minimumFractionDigits: a >= 1000 ? 0 : 2 })}`;
}

function short(micros: number): string {
  const u = micros / 1_000_000;
  const a = Math.abs(u);
  const s = a >= 1e6 ? `${(a / 1e6).toFixed(1)}M` : a >= 1e3 ? `${(a / 1e3).toFixed(1)}k` : a > 0 && a < 0.1 ? a.toFixed(4) : a.toFixed(2);
  return `${u < 0 ? '−' : ''}${s}`;
}

function trim(s: string): string {
  return s.length > 18 ? `${s.slice(0, 17)}…` : s;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
