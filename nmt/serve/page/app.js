// The page of `nmt serve`: translate what is typed, show a sentence's attention and n-best list.
// Plain JavaScript, no build step; it talks only to the server that served it.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
// matplotlib's viridis at 9 stops, interpolated linearly (the colours of `nmt translate --plot-attention`)
const VIRIDIS = ["#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725"];
let results = [];

function colour(w) {
  const x = Math.min(1, Math.max(0, w)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const a = VIRIDIS[i], b = VIRIDIS[i + 1], f = x - i;
  const mix = (k) => Math.round(parseInt(a.substr(k, 2), 16) * (1 - f) + parseInt(b.substr(k, 2), 16) * f);
  return `rgb(${mix(1)},${mix(3)},${mix(5)})`;
}

function el(tag, attrs, text) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// A server started with --token-file answers the API with 401 until the request carries its token:
// the page asks for it once and keeps it for this tab only (sessionStorage), never in the address.
async function api(path, options) {
  for (let asked = false; ; asked = true) {
    const token = sessionStorage.getItem("nmt-token");
    const headers = { ...((options || {}).headers || {}), ...(token ? { Authorization: "Bearer " + token } : {}) };
    const response = await fetch(path, { ...(options || {}), headers: headers });
    if (response.status !== 401 || asked) return response;
    const given = window.prompt(token ? "That token was refused; the server's token:" : "This server needs a token:");
    if (!given) return response;
    sessionStorage.setItem("nmt-token", given.trim());
  }
}

async function loadInfo() {
  try {
    const response = await api("/info");
    const info = await response.json();
    if (!response.ok) throw new Error(info.error || response.statusText);
    const [src, tgt] = info.config.languages;
    $("model").textContent = `${info.model}: ${src} → ${tgt}, ${info.config.parameters.toLocaleString()} parameters, nmt ${info.version}`;
    $("beam").value = info.decoding.beam_size;
    $("alpha").value = info.decoding.alpha;
    $("beam").max = $("nbest").max = info.limits.max_beam;
  } catch (e) {
    $("model").textContent = "(no model information: " + e + ")";
  }
}

async function translate() {
  const lines = $("src").value.replace(/\n+$/, "").split("\n");
  const beam = parseInt($("beam").value, 10) || 1;
  const body = { src: lines, beam: beam, alpha: parseFloat($("alpha").value) || 0, attention: true, align: true,
                 n_best: Math.min(beam, parseInt($("nbest").value, 10) || 1) };
  const typed = $("prefix").value.split("\n");  // one prefix per sentence; none for the lines without
  if (typed.some((p) => p !== "")) body.prefix = lines.map((_, i) => typed[i] || "");
  const terms = $("terms").value.split("\n").map((line) => line.split("|").map((t) => t.trim()).filter((t) => t));
  if (terms.some((t) => t.length)) body.constraints = lines.map((_, i) => terms[i] || []);
  $("translate").disabled = true;
  status("translating…");
  try {
    const response = await api("/translate", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(body) });
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
    results = data.translations.map((t, i) => ({ src: lines[i], ...t }));
    showResults();
    const unmet = data.translations.flatMap((t, i) => (t.unmet_constraints || []).map((p) => `line ${i + 1} lacks "${p}"`));
    const notes = data.notes.concat(unmet).length ? " — " + data.notes.concat(unmet).join("; ") : "";
    status(`${lines.length} line(s) in ${data.elapsed_ms.toFixed(0)} ms${notes}`);
  } catch (e) {
    status("error: " + e.message, true);
  } finally {
    $("translate").disabled = false;
  }
}

function showResults() {
  const list = $("results");
  list.replaceChildren();
  results.forEach((r, i) => {
    const item = el("li", { "data-index": i });
    const src = words(r.src, "src", "div"), tgt = words(r.text, "tgt", "span");
    item.append(src, tgt);
    linkWords(src, tgt, r.alignment || []);
    if (r.tgt_pieces.length) item.append(el("span", { class: "score" }, r.score.toFixed(3)));
    item.addEventListener("click", () => select(i, 0));
    list.append(item);
  });
  const first = results.findIndex((r) => r.tgt_pieces.length);
  if (first >= 0) select(first, 0); else $("detail").hidden = true;
}

// a text as one element of word spans (as the alignment counts words: split at whitespace)
function words(text, cls, tag) {
  const node = el(tag, { class: cls });
  text.split(/\s+/).filter(Boolean).forEach((w, i) => {
    if (i) node.append(" ");
    node.append(el("span", { class: "word", "data-word": i }, w));
  });
  return node;
}

// the mouse over an output word highlights the source word it is aligned with
function linkWords(src, tgt, links) {
  tgt.querySelectorAll(".word").forEach((word) => {
    const sources = links.filter(([, j]) => j == word.dataset.word).map(([i]) => i);
    const mark = (on) => sources.forEach((i) => src.querySelector(`[data-word="${i}"]`)?.classList.toggle("aligned", on));
    word.addEventListener("mouseenter", () => mark(true));
    word.addEventListener("mouseleave", () => mark(false));
  });
}

function select(i, k) {
  const r = results[i];
  document.querySelectorAll("#results li").forEach((li) => li.classList.toggle("selected", li.dataset.index == i));
  if (!r.tgt_pieces.length) { $("detail").hidden = true; return; }
  $("detail").hidden = false;
  const hyp = r.n_best[k];
  $("detail-text").textContent = `${r.src} → ${hyp.text}`;
  drawHeatmap(r.src_pieces, hyp.tgt_pieces, hyp.attention);
  const list = $("nbest-list");
  list.replaceChildren();
  r.n_best.forEach((h, j) => {
    const item = el("li", { class: j === k ? "selected" : "" }, h.text);
    item.append(el("span", { class: "score" }, `score ${h.score.toFixed(3)}  log P ${h.log_prob.toFixed(3)}`));
    item.addEventListener("click", () => select(i, j));
    list.append(item);
  });
}

// rows: output subwords, columns: source subwords; a cell's colour is its attention weight
function drawHeatmap(srcPieces, tgtPieces, weights) {
  const cell = 24, left = 12 + 8 * Math.max(...tgtPieces.map((p) => p.length)),
        top = 12 + 6 * Math.max(...srcPieces.map((p) => p.length));
  const width = left + cell * srcPieces.length + 10, height = top + cell * tgtPieces.length + 10;
  const svg = el("svg:svg", { width: width, height: height, viewBox: `0 0 ${width} ${height}`, role: "img",
                              "aria-label": "attention weights" });
  srcPieces.forEach((p, j) => {
    const x = left + cell * j + cell / 2;
    svg.append(el("svg:text", { x: x, y: top - 6, transform: `rotate(-60 ${x} ${top - 6})` }, p));
  });
  tgtPieces.forEach((p, t) => {
    svg.append(el("svg:text", { x: left - 6, y: top + cell * t + cell / 2 + 4, "text-anchor": "end" }, p));
    srcPieces.forEach((_, j) => {
      const w = weights[t][j];
      const rect = el("svg:rect", { class: "cell", x: left + cell * j, y: top + cell * t, width: cell - 1,
                                    height: cell - 1, fill: colour(w), "data-weight": w });
      rect.append(el("svg:title", {}, `${tgtPieces[t]} ← ${srcPieces[j]}: ${w.toFixed(3)}`));
      svg.append(rect);
    });
  });
  $("heatmap").replaceChildren(svg);
}

$("translate").addEventListener("click", translate);
$("src").addEventListener("keydown", (e) => { if (e.key === "Enter" && e.ctrlKey) translate(); });
loadInfo();
