// adaopt explore: the page. Every number drawn here comes from the server's JSON (/api/run,
// computed by adaopt's rules); this script only collects the controls, asks, and draws.
// window.explore holds what the page shows (the last request and answer), for the tests.
"use strict";

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008b8b", "#f032e6", "#808000",
                 "#9a6324", "#800000", "#000075", "#469990"];
const S = { meta: null, problem: null, surf: null, base: null, tr: null, start: null, request: null, last: null,
            error: null, runs: 0, busy: false, animating: false, upto: 0, hoverStep: null, lesson: null };
window.explore = S;

const $ = (id) => document.getElementById(id);
const fmt = (v) => (v === null || v === undefined ? "—" : typeof v === "number" ? String(+v.toPrecision(6)) : v);

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function showError(msg) {
  S.error = msg;
  $("error").textContent = msg ? "error: " + msg : "";
  $("error").hidden = !msg;
}

// ---------------------------------------------------------------------------- the controls

const SLIDERS = [  // id, label, min, max, step, value, to the request's value, shown as
  ["steps", "steps", 10, 2000, 10, 500, (v) => v, (v) => v],
  ["momentum", "momentum μ", 0, 0.99, 0.01, 0.9, (v) => v, (v) => v],
  ["beta1", "β1", 0, 0.99, 0.01, 0.9, (v) => v, (v) => v],
  ["beta2", "β2 = 1-10^-k", 1, 5, 0.05, 3, (k) => +(1 - Math.pow(10, -k)).toPrecision(8), (v) => v],
  ["rho", "ρ (RMSprop α)", 0.5, 0.999, 0.001, 0.99, (v) => v, (v) => v],
  ["eps", "ε = 10^k", -12, -1, 0.5, -8, (k) => Math.pow(10, k), (v) => v.toExponential(0)],
];

function sliderRow(id, label, min, max, step, value) {
  const row = document.createElement("div");
  row.className = "slider";
  row.innerHTML = `<span>${label}</span><input type="range" id="${id}" min="${min}" max="${max}" step="${step}"
    value="${value}"><span class="val" id="${id}-val"></span>`;
  return row;
}

function buildControls() {
  const m = S.meta;
  for (const p of m.problems) $("problem").add(new Option(p.title, p.name));
  for (const c of m.conventions) $("conventions").add(new Option(c, c));
  m.optimizers.forEach((o, k) => {
    const row = document.createElement("div");
    row.className = "opt";
    row.innerHTML = `<input type="checkbox" id="use-${o.name}" ${o.shown ? "checked" : ""}>
      <span title="${o.summary}"><span class="swatch" style="background:${PALETTE[k % PALETTE.length]}"></span>
      ${o.name}</span><input type="range" id="lr-${o.name}" min="0" max="${LRS.length - 1}" step="1" value="${lrIndex(0.01)}">
      <span class="val" id="lr-${o.name}-val"></span>`;
    $("optimizers").append(row);
  });
  for (const [id, label, min, max, step, value] of SLIDERS) $("sliders").append(sliderRow(id, label, min, max, step, value));
  const epsRow = document.createElement("label");
  epsRow.innerHTML = `<input type="checkbox" id="eps-preset" checked> ε: the preset's default`;
  $("sliders").append(epsRow);
  for (const l of m.lesson) {
    const b = document.createElement("button");
    b.type = "button"; b.id = "lesson-" + l.id; b.textContent = l.title;
    b.addEventListener("click", () => showLesson(l.id));
    $("lesson-buttons").append(b);
  }
  document.querySelectorAll("#controls input[type=range], #controls input[type=checkbox]").forEach((el) => {
    el.addEventListener("input", () => { labels(); schedule(); });
  });
  $("conventions").addEventListener("change", () => {
    $("rho").value = $("conventions").value === "torch" ? 0.99 : 0.9;
    labels(); schedule();
  });
  $("problem").addEventListener("change", () => setProblem($("problem").value));
  $("expr-go").addEventListener("click", () => setProblem("custom"));
  for (const id of ["expr", "x-lo", "x-hi", "y-lo", "y-hi"])
    $(id).addEventListener("keydown", (e) => { if (e.key === "Enter") setProblem("custom"); });
  $("map").addEventListener("click", clickMap);
  $("map").addEventListener("mousemove", hoverMap);
  for (const id of ["loss", "efflr", "bc", "accum"]) $(id).addEventListener("mousemove", (e) => hoverPanel(e, id));
}

// The lr sliders step through 1, 1.5, 2, 3, 5, 7 in each decade from 1e-5 to 10.
const LRS = [];
for (let e = -5; e <= 1; e++) for (const m of [1, 1.5, 2, 3, 5, 7]) if (e < 1 || m === 1) LRS.push(+(m * Math.pow(10, e)).toPrecision(3));
function lrOf(name) { return LRS[+$("lr-" + name).value]; }
function lrIndex(lr) {
  let best = 0;
  LRS.forEach((v, i) => { if (Math.abs(Math.log(v / lr)) < Math.abs(Math.log(LRS[best] / lr))) best = i; });
  return best;
}

function labels() {
  for (const o of S.meta.optimizers) $("lr-" + o.name + "-val").textContent = lrOf(o.name);
  for (const [id, , , , , , conv, show] of SLIDERS) $(id + "-val").textContent = show(conv(+$(id).value));
  $("eps").disabled = $("eps-preset").checked;
}

function buildRequest() {
  const val = (id) => SLIDERS.find((s) => s[0] === id)[6](+$(id).value);
  const req = {
    problem: S.problem.name, start: S.start, steps: val("steps"),
    optimizers: S.meta.optimizers.filter((o) => $("use-" + o.name).checked).map((o) => ({ name: o.name, lr: lrOf(o.name) })),
    momentum: val("momentum"), beta1: val("beta1"), beta2: val("beta2"), rho: val("rho"),
    eps: $("eps-preset").checked ? null : val("eps"), conventions: $("conventions").value,
    digits: 6, state: ["G"],  // what the page prints (fmt) and the one buffer it draws: a third of the bytes
  };
  for (const id of ["bias_correction", "nesterov", "amsgrad", "centered"]) req[id] = $(id).checked;
  if (S.problem.name === "custom") req.expr = $("expr").value;
  return req;
}

// ---------------------------------------------------------------------------- asking the server

// The plot range typed for f(x, y): [[x_min, x_max], [y_min, y_max]] (the server checks it).
function plotRange() {
  const num = (id) => { const v = $(id).value.trim(); return v === "" ? null : Number(v); };
  return [[num("x-lo"), num("x-hi")], [num("y-lo"), num("y-hi")]];
}

// The problem's start, or the middle of the map where that is outside it.
function startIn(start, [[x0, x1], [y0, y1]]) {
  const inside = start[0] >= x0 && start[0] <= x1 && start[1] >= y0 && start[1] <= y1;
  return inside ? start.slice() : [+((x0 + x1) / 2).toPrecision(4), +((y0 + y1) / 2).toPrecision(4)];
}

async function setProblem(name) {
  const p = S.meta.problems.find((q) => q.name === name);
  $("problem").value = name;
  $("custom").hidden = name !== "custom";
  $("problem-note").textContent = p.description;
  for (const [opt, lr] of Object.entries(p.lrs)) if ($("lr-" + opt)) $("lr-" + opt).value = lrIndex(lr);
  labels();
  S.busy = true;
  try {
    const body = { problem: name };
    if (name === "custom") { body.expr = $("expr").value; body.bounds = plotRange(); }
    const surf = await api("/api/surface", body);
    S.problem = p; S.surf = surf; S.start = startIn(p.start, surf.bounds); S.last = null;
    S.base = document.createElement("canvas");
    S.base.width = $("map").width; S.base.height = $("map").height;
    S.tr = Plot.map(S.base, surf);
    showError(null);
    await run();
  } catch (err) {
    showError(err.message);
    S.busy = false;
  }
}

let timer = null;
function schedule() { clearTimeout(timer); S.busy = true; timer = setTimeout(run, 60); }

async function run() {
  if (!S.problem) return;
  const req = buildRequest(), id = ++S.runs;
  S.busy = true;
  $("start-text").textContent = `(${fmt(S.start[0])}, ${fmt(S.start[1])})`;
  try {
    const out = await api("/api/run", req);
    if (id !== S.runs) return;  // a newer request is on its way
    S.request = req; S.last = out;
    showError(null);
    verdicts(out);
    animate(out);
  } catch (err) {
    if (id !== S.runs) return;
    showError(err.message);
    S.busy = false;
  }
}

// ---------------------------------------------------------------------------- drawing

function colorOf(name) {
  const k = S.meta.optimizers.findIndex((o) => o.name === name);
  return PALETTE[k % PALETTE.length];
}

function animate(out) {
  const total = out.steps, t0 = performance.now(), ms = $("animate").checked ? 1200 : 0;
  S.animating = ms > 0;
  const frame = (now) => {
    const u = ms ? Math.min(1, (now - t0) / ms) : 1;
    S.upto = Math.max(1, Math.round(u * total));
    drawMap(S.upto); drawPanels(S.upto);
    if (u < 1 && out === S.last) requestAnimationFrame(frame);
    else { S.animating = false; S.busy = false; readout(S.hoverStep || total); }
  };
  requestAnimationFrame(frame);
}

function drawMap(upto) {
  const ctx = $("map").getContext("2d");
  ctx.clearRect(0, 0, $("map").width, $("map").height);
  ctx.drawImage(S.base, 0, 0);
  const tr = S.tr;
  ctx.save();
  ctx.beginPath(); ctx.rect(tr.pad.l, tr.pad.t, tr.w, tr.h); ctx.clip();
  if (S.problem.x_opt) {
    const [px, py] = tr.toPx(...S.problem.x_opt);
    ctx.fillStyle = "#fff"; ctx.font = "16px sans-serif"; ctx.fillText("★", px - 6, py + 6);
  }
  for (const r of (S.last ? S.last.runs : [])) {
    ctx.strokeStyle = colorOf(r.name); ctx.lineWidth = 2; ctx.beginPath();
    let pen = false;
    for (let t = 0; t <= Math.min(upto, r.x.length - 1); t++) {
      const p = r.x[t];
      if (!p || p[0] === null || p[1] === null) { pen = false; continue; }
      const [px, py] = tr.toPx(p[0], p[1]);
      if (pen) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      pen = true;
    }
    ctx.stroke();
    const at = r.x[Math.min(S.hoverStep || upto, r.x.length - 1)];
    if (at && at[0] !== null && at[1] !== null) {
      const [px, py] = tr.toPx(at[0], at[1]);
      ctx.fillStyle = colorOf(r.name); ctx.beginPath(); ctx.arc(px, py, 4, 0, 2 * Math.PI); ctx.fill();
    }
  }
  const [sx, sy] = tr.toPx(S.start[0], S.start[1]);
  ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(sx, sy, 6, 0, 2 * Math.PI); ctx.stroke();
  ctx.restore();
}

function series(pick, upto, dashed) {
  const out = [];
  for (const r of (S.last ? S.last.runs : [])) {
    const cols = pick(r);
    if (!cols) continue;
    cols.forEach((col, k) => out.push({ color: colorOf(r.name), dash: dashed && k === 1,
      points: col.slice(0, upto).map((v, i) => [i + 1, v]) }));
  }
  return out;
}

function drawPanels(upto) {
  const mark = S.hoverStep;
  const col = (rows, k) => rows.map((v) => (v ? v[k] : null));
  Plot.lines($("loss"), series((r) => [r.f.slice(0, -1)], upto, false), { log: lossIsPositive(), mark });
  Plot.lines($("efflr"), series((r) => [col(r.eff_lr, 0), col(r.eff_lr, 1)], upto, true), { log: true, mark });
  Plot.lines($("bc"), series((r) => r.bias_correction && [col(r.bias_correction, 0), col(r.bias_correction, 1)], upto,
    true), { log: true, mark, empty: "no optimizer with bias correction" });
  Plot.lines($("accum"), series((r) => r.family === "adagrad" && [col(r.state.G, 0), col(r.state.G, 1)], upto, true),
    { log: true, mark, empty: "AdaGrad is not running" });
}

function lossIsPositive() {
  return !!S.last && S.last.runs.every((r) => r.f.every((v) => v === null || v > 0));
}

function verdicts(out) {
  $("verdicts").innerHTML = "";
  for (const r of out.runs) {
    const d = r.diagnosis, div = document.createElement("div");
    div.className = "verdict"; div.dataset.name = r.name; div.style.borderColor = colorOf(r.name);
    div.innerHTML = `<b>${r.label}</b>: <span class="v">${d.verdict}</span> — <span class="cause"></span>
      <ul>${d.advice.map(() => "<li></li>").join("")}</ul>`;
    div.querySelector(".cause").textContent = d.cause;
    div.querySelectorAll("li").forEach((li, k) => { li.textContent = d.advice[k]; });
    $("verdicts").append(div);
  }
}

// The numbers at step t (1-based: the step's gradient, effective lr, state; x and f after it).
function readout(t) {
  if (!S.last) return;
  const head = ["optimizer", "x", "y", "f", "lr_eff x", "lr_eff y", "1/(1-β1^t)", "1/(1-β2^t)", "G x", "G y"];
  const rows = S.last.runs.map((r) => {
    const k = Math.min(t, r.eff_lr.length), x = r.x[k] || [null, null], e = r.eff_lr[k - 1] || [null, null];
    const bc = r.bias_correction ? r.bias_correction[k - 1] || [null, null] : [null, null];
    const G = r.family === "adagrad" ? r.state.G[k - 1] || [null, null] : [null, null];
    return [r.name, x[0], x[1], r.f[k], e[0], e[1], bc[0], bc[1], G[0], G[1]];
  });
  $("readout").innerHTML = `<p class="note">step <span id="readout-step">${t}</span> (hover a panel or a path)</p>
    <table id="readout-table"><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>${rows.map((row) =>
      `<tr data-name="${row[0]}">${row.map((v, i) => `<td class="${i ? "" : "l"}">${fmt(v)}</td>`).join("")}</tr>`).join("")}
    </table>`;
}

// ---------------------------------------------------------------------------- the mouse

function mouse(e, canvas) {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * (canvas.width / box.width), (e.clientY - box.top) * (canvas.height / box.height)];
}

function clickMap(e) {
  if (!S.tr) return;
  const [px, py] = mouse(e, $("map"));
  if (!S.tr.inside(px, py)) return;
  S.start = S.tr.fromPx(px, py).map((v) => +v.toPrecision(4));
  S.hoverStep = null;
  run();
}

function hoverMap(e) {
  if (!S.tr) return;
  const [px, py] = mouse(e, $("map")), [x, y] = S.tr.fromPx(px, py);
  let best = null;
  for (const r of (S.last ? S.last.runs : [])) {
    r.x.forEach((p, t) => {
      if (!p || p[0] === null || p[1] === null || t > S.upto) return;
      const [qx, qy] = S.tr.toPx(p[0], p[1]), d = Math.hypot(qx - px, qy - py);
      if (d < 8 && (!best || d < best.d)) best = { d, t, name: r.name };
    });
  }
  $("hover").textContent = `x = ${fmt(x)}, y = ${fmt(y)}` + (best ? `; ${best.name} at step ${best.t}` : "");
  if (best && best.t > 0) { S.hoverStep = best.t; readout(best.t); drawMap(S.upto); drawPanels(S.upto); }
}

function hoverPanel(e, id) {
  if (!S.last) return;
  const [px] = mouse(e, $(id)), w = $(id).width - 52;
  S.hoverStep = Math.max(1, Math.min(S.last.steps, Math.round(((px - 44) / w) * S.last.steps)));
  readout(S.hoverStep); drawMap(S.upto); drawPanels(S.upto);
}

// ---------------------------------------------------------------------------- the lesson

async function showLesson(id) {
  try {
    const p = await api("/api/lesson/" + id);
    S.lesson = p;
    $("lesson").hidden = false;
    $("lesson-title").textContent = p.title;
    $("lesson-setup").textContent = p.setup;
    $("lesson-checks").innerHTML = `<table id="lesson-checks-table"><tr><th class="l">quantity</th><th>the lesson</th>
      <th>adaopt</th><th class="l">where they differ</th></tr>${p.checks.map((c) => `<tr data-what="${c.what}">
      <td class="l">${c.what}</td><td>${c.lesson}</td><td class="adaopt" title="${c.exact}">${c.adaopt}</td>
      <td class="l">${c.note}</td></tr>`).join("")}</table>`;
    $("lesson-tables").innerHTML = p.runs.filter((r) => r.columns).map((r) => `<table><caption>${r.label}</caption>
      <tr>${r.columns.map((c) => `<th>${c}</th>`).join("")}</tr>${r.rows.map((row) =>
        `<tr>${row.map((v) => `<td>${v}</td>`).join("")}</tr>`).join("")}</table>`).join("");
    const key = p.runs.length && p.runs[0].series.weight ? "weight" : "x";
    Plot.lines($("lesson-plot"), p.runs.map((r, k) => ({ color: PALETTE[k], dash: false,
      points: (r.series[key] || []).map((v, i) => [r.series.t[i], key === "x" ? Math.abs(v) : v]) })),
    { log: key === "x", empty: "no run to plot: see the table" });
    showError(null);
    $("lesson").scrollIntoView();
  } catch (err) {
    showError(err.message);
  }
}

// ---------------------------------------------------------------------------- start

(async () => {
  try {
    S.meta = await api("/api/problems");
    buildControls();
    labels();
    await setProblem("rosenbrock");
  } catch (err) {
    showError(err.message);
  }
})();
