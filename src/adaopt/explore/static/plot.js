// adaopt explore: small plotting on a plain <canvas> (written here; no library, nothing fetched).
// Plot.map draws f on a grid as a shaded map with iso-lines (marching squares on log-scaled
// values) and returns the coordinate transform; Plot.lines draws series against the step.
"use strict";

const Plot = (() => {
  const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];  // viridis

  function color(u) {
    u = Math.min(1, Math.max(0, u)) * (STOPS.length - 1);
    const i = Math.min(STOPS.length - 2, Math.floor(u)), w = u - i;
    return STOPS[i].map((c, k) => Math.round(c + w * (STOPS[i + 1][k] - c)));
  }

  // f on the grid, log-scaled: t = log10(1 + (f - min) / scale), so the valley floors keep detail.
  function scaled(z) {
    const flat = z.flat().filter((v) => v !== null);
    if (!flat.length) return null;
    const lo = Math.min(...flat), sorted = flat.slice().sort((a, b) => a - b);
    const scale = Math.max(sorted[Math.floor(0.02 * (sorted.length - 1))] - lo, 1e-12 * (Math.abs(lo) + 1),
                           (sorted[sorted.length - 1] - lo) * 1e-6);
    const t = z.map((row) => row.map((v) => (v === null ? null : Math.log10(1 + (v - lo) / scale))));
    const tf = t.flat().filter((v) => v !== null);
    return { t, max: Math.max(...tf) || 1 };
  }

  function frame(canvas, bounds, pad) {
    const [[x0, x1], [y0, y1]] = bounds, w = canvas.width - pad.l - pad.r, h = canvas.height - pad.t - pad.b;
    return {
      toPx: (x, y) => [pad.l + ((x - x0) / (x1 - x0)) * w, pad.t + (1 - (y - y0) / (y1 - y0)) * h],
      fromPx: (px, py) => [x0 + ((px - pad.l) / w) * (x1 - x0), y0 + (1 - (py - pad.t) / h) * (y1 - y0)],
      inside: (px, py) => px >= pad.l && px <= pad.l + w && py >= pad.t && py <= pad.t + h,
      pad, w, h,
    };
  }

  // One iso-line level: for every cell, the points where the level crosses an edge, joined in pairs.
  function isoline(ctx, t, xs, ys, level, tr) {
    const n = xs.length, m = ys.length;
    ctx.beginPath();
    for (let j = 0; j + 1 < m; j++) {
      for (let i = 0; i + 1 < n; i++) {
        const c = [[i, j], [i + 1, j], [i + 1, j + 1], [i, j + 1]];
        const v = c.map(([a, b]) => t[b][a]);
        if (v.some((q) => q === null)) continue;
        const pts = [];
        for (let e = 0; e < 4; e++) {
          const a = v[e], b = v[(e + 1) % 4];
          if ((a < level) !== (b < level)) {
            const w = (level - a) / (b - a), [ia, ja] = c[e], [ib, jb] = c[(e + 1) % 4];
            pts.push(tr.toPx(xs[ia] + w * (xs[ib] - xs[ia]), ys[ja] + w * (ys[jb] - ys[ja])));
          }
        }
        for (let k = 0; k + 1 < pts.length; k += 2) {
          ctx.moveTo(pts[k][0], pts[k][1]);
          ctx.lineTo(pts[k + 1][0], pts[k + 1][1]);
        }
      }
    }
    ctx.stroke();
  }

  function map(canvas, surf) {
    const ctx = canvas.getContext("2d"), pad = { l: 44, r: 10, t: 10, b: 30 };
    const tr = frame(canvas, surf.bounds, pad);
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const s = scaled(surf.z), n = surf.x.length, m = surf.y.length;
    if (s) {
      const img = new ImageData(n, m);
      for (let j = 0; j < m; j++) {
        for (let i = 0; i < n; i++) {
          const v = s.t[m - 1 - j][i], k = 4 * (j * n + i);
          const [r, g, b] = v === null ? [255, 255, 255] : color(v / s.max);
          img.data.set([r, g, b, v === null ? 0 : 150], k);
        }
      }
      const off = document.createElement("canvas");
      off.width = n; off.height = m;
      off.getContext("2d").putImageData(img, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(off, pad.l, pad.t, tr.w, tr.h);
      ctx.strokeStyle = "rgba(30,30,40,0.35)";
      ctx.lineWidth = 0.8;
      for (let k = 1; k <= 14; k++) isoline(ctx, s.t, surf.x, surf.y, (k / 15) * s.max, tr);
    }
    axes(ctx, tr, surf.bounds[0], surf.bounds[1], false);
    return tr;
  }

  function ticks(lo, hi, log) {
    if (log) {
      const out = [];
      for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) out.push(e);
      return out.length > 6 ? out.filter((_, i) => i % Math.ceil(out.length / 6) === 0) : out;
    }
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 4 || 1)));
    const nice = [1, 2, 5, 10].map((k) => k * step).find((s) => (hi - lo) / s <= 6) || 10 * step;
    const out = [];
    for (let v = Math.ceil(lo / nice) * nice; v <= hi + 1e-12; v += nice) out.push(+v.toPrecision(6));
    return out;
  }

  function axes(ctx, tr, xr, yr, logy) {
    ctx.strokeStyle = "#667"; ctx.fillStyle = "#334"; ctx.lineWidth = 1; ctx.font = "11px sans-serif";
    const { l, t } = tr.pad;
    ctx.strokeRect(l, t, tr.w, tr.h);
    for (const v of ticks(xr[0], xr[1], false)) {
      const [px] = tr.toPx(v, yr[0]);
      ctx.fillText(String(v), px - 8, t + tr.h + 14);
    }
    let ys = ticks(yr[0], yr[1], logy), label = (v) => (logy ? "1e" + v : String(v));
    if (logy && ys.length < 2) {  // less than a decade: the ends, as numbers
      ys = [yr[0], yr[1]];
      label = (v) => String(+Math.pow(10, v).toPrecision(3));
    }
    for (const v of ys) {
      const [, py] = tr.toPx(xr[0], v);
      ctx.fillText(label(v), 2, py + 4);
    }
  }

  // series: [{color, dash, points: [[t, value], ...]}]; log: log10 of the values (non-positive dropped).
  function lines(canvas, series, opts = {}) {
    const ctx = canvas.getContext("2d"), pad = { l: 44, r: 8, t: 6, b: 18 };
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const log = !!opts.log, map = (v) => (log ? (v > 0 ? Math.log10(v) : null) : v);
    const pts = series.map((s) => s.points.map(([t, v]) => [t, v === null ? null : map(v)]));
    const all = pts.flat().filter((p) => p[1] !== null && isFinite(p[1]));
    if (!all.length) { ctx.fillStyle = "#889"; ctx.fillText(opts.empty || "nothing to show", 50, 40); return null; }
    let ylo = Math.min(...all.map((p) => p[1])), yhi = Math.max(...all.map((p) => p[1]));
    if (yhi - ylo < 1e-12) { ylo -= 0.5; yhi += 0.5; }
    const xhi = Math.max(...all.map((p) => p[0]), 1), xlo = Math.min(...all.map((p) => p[0]));
    const tr = frame(canvas, [[xlo, xhi], [ylo, yhi]], pad);
    series.forEach((s, k) => {
      ctx.strokeStyle = s.color; ctx.lineWidth = 1.5; ctx.setLineDash(s.dash ? [4, 3] : []);
      ctx.beginPath();
      let pen = false;
      for (const [t, v] of pts[k]) {
        if (v === null || !isFinite(v)) { pen = false; continue; }
        const [px, py] = tr.toPx(t, v);
        if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
        pen = true;
      }
      ctx.stroke();
    });
    ctx.setLineDash([]);
    axes(ctx, tr, [xlo, xhi], [ylo, yhi], log);
    if (opts.mark) {
      const [px] = tr.toPx(opts.mark, ylo);
      ctx.strokeStyle = "rgba(200,30,30,0.6)"; ctx.beginPath(); ctx.moveTo(px, pad.t); ctx.lineTo(px, pad.t + tr.h);
      ctx.stroke();
    }
    return tr;
  }

  return { map, lines, color };
})();
