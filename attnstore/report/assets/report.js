// Renders the report's JSON with Plotly. Python builds the data (attnstore/report/data.py);
// this file only draws it: each page's JSON is in <script id="page-data" type=
// "application/json"> (a head page's attention rows in its "head"). The data may come from a
// store someone handed you: it only ever reaches the page as text (textContent, never
// innerHTML), and the page's Content-Security-Policy runs no script but files of assets/.
"use strict";

const PAGE = JSON.parse(document.getElementById("page-data").textContent);
const CONFIG = { displaylogo: false, responsive: true };
// matplotlib's Purples, which the head figure uses too (Plotly has no such named scale).
const PURPLES = [[0, "#fcfbfd"], [0.25, "#dadaeb"], [0.5, "#9e9ac8"], [0.75, "#6a51a3"], [1, "#3f007d"]];
// matplotlib's RdBu (ColorBrewer's 11 classes), as the figures draw a change: the maps of a
// signed value (an intervention's effect) centre it on 0, red below, blue above.
const RDBU = ["#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7", "#d1e5f0",
              "#92c5de", "#4393c3", "#2166ac", "#053061"].map((c, i) => [i / 10, c]);

// Sortable tables: click a header to sort by it (again to reverse).
function sortable(table) {
  table.querySelectorAll("th").forEach((th, col) => {
    th.addEventListener("click", () => {
      const body = table.tBodies[0];
      const asc = th.dataset.order !== "asc";
      table.querySelectorAll("th").forEach((h) => delete h.dataset.order);
      th.dataset.order = asc ? "asc" : "desc";
      const key = (tr) => {
        const text = tr.cells[col].textContent;
        const num = parseFloat(text);
        return isNaN(num) ? text : num;
      };
      const rows = Array.from(body.rows).sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach((tr) => body.appendChild(tr));
    });
  });
  table.querySelectorAll("tr[data-href]").forEach((tr) => {
    tr.addEventListener("click", () => { window.location.href = tr.dataset.href; });
  });
}
document.querySelectorAll("table.sortable").forEach(sortable);

function column(table, name) {
  const i = table.columns.indexOf(name);
  return table.rows.map((r) => r[i]);
}

function overview() {
  const acc = PAGE.accuracy;
  const x = column(acc, "point");
  const traces = ["model_accuracy", "majority_accuracy", "elimination_accuracy"]
    .filter((name) => column(acc, name).some((v) => v !== null))
    .map((name) => ({ x, y: column(acc, name), name: name.replace("_accuracy", ""),
                      type: "scatter", mode: "lines+markers" }));
  Plotly.newPlot("accuracy", traces, {
    xaxis: { title: { text: "point" } }, yaxis: { title: { text: "accuracy" }, range: [0, 1.02] },
    margin: { t: 20 },
  }, CONFIG);
}

// A signed map's 95% interval of one head, as hover text; empty where it has none (a metric's
// map, a head with one prompt).
function interval(m, layer, head) {
  if (!m.lower) return "";
  const [lo, hi] = [m.lower[layer][head], m.upper[layer][head]];
  return lo === null || hi === null ? "" : `<br>95% interval [${lo.toFixed(3)}, ${hi.toFixed(3)}]`;
}

function heads() {
  const select = document.getElementById("metric");
  if (!select) return;
  const draw = () => {
    const m = PAGE.maps[Number(select.value)];
    const layers = m.z.map((_, i) => i);
    Plotly.react("map", [{
      z: m.z, y: layers, type: "heatmap", hoverongaps: false,
      colorscale: m.signed ? RDBU : "Viridis", zmid: m.signed ? 0 : undefined,
      text: m.z.map((row) => row.map((v) => (v === null ? "" : v.toFixed(3)))),
      texttemplate: "%{text}",
      customdata: m.z.map((row, l) => row.map((_, h) => interval(m, l, h))),
      hovertemplate: "layer %{y}, head %{x}<br>" + m.name + ": %{z:.3f}%{customdata}<extra></extra>",
    }], {
      xaxis: { title: { text: "head" }, dtick: 1 },
      yaxis: { title: { text: "layer" }, dtick: 1, autorange: "reversed" },
      margin: { t: 20 },
    }, CONFIG);
  };
  select.addEventListener("change", draw);
  draw();
  document.getElementById("map").on("plotly_click", (e) => {
    const p = e.points[0];
    window.location.href = `heads/L${p.y}_H${p.x}.html`;
  });
}

function token(t, pos) {
  return `${t.kind}${t.point} (pos ${pos}, point ${t.point}, x ${t.x}, y ${t.y > 0 ? "+1" : "-1"})`;
}

// A head's change of accuracy at each point, one line per intervention, its interval as
// error bars (a bound may be null: one prompt gives none).
function effectsByPoint(series) {
  const traces = series.map((e) => ({
    x: e.point, y: e.delta_accuracy, name: e.name, type: "scatter", mode: "lines+markers",
    error_y: {
      type: "data", symmetric: false, thickness: 1,
      array: e.delta_accuracy.map((v, i) => (e.delta_accuracy_upper[i] === null ? 0 : e.delta_accuracy_upper[i] - v)),
      arrayminus: e.delta_accuracy.map((v, i) => (e.delta_accuracy_lower[i] === null ? 0 : v - e.delta_accuracy_lower[i])),
    },
  }));
  Plotly.newPlot("effects", traces, {
    xaxis: { title: { text: "point" }, dtick: 1 },
    yaxis: { title: { text: "change of accuracy (95% interval)" }, zeroline: true },
    margin: { t: 20 },
  }, CONFIG);
}

function head() {
  const D = PAGE.head;
  const sampleSelect = document.getElementById("sample");
  const viewSelect = document.getElementById("view");
  const info = document.getElementById("hover-info");
  // The lines that describe one cell: Plotly's tooltip joins them with <br>, the line below
  // the chart shows them as text.
  const describe = (w, toks, labels, q, k) => {
    const cluster = labels[q] === null || labels[q] === undefined ? "not clustered" : labels[q];
    return [`query ${token(toks[q], q)}`, `key ${token(toks[k], k)}`, `weight ${w[q][k].toFixed(3)}`,
            `cluster of the query (${viewSelect.value || "none"}): ${cluster}`];
  };
  let current = null;  // what draw() drew: the hover line describes its cells
  const draw = () => {
    const s = sampleSelect.value;
    const w = D.samples[s].map((row) => row.map((v) => v / D.scale));
    const toks = D.tokens[s];
    const labels = (D.labels[viewSelect.value] || {})[s] || [];
    current = { w, toks, labels };
    const text = w.map((row, q) => row.map((_, k) => describe(w, toks, labels, q, k).join("<br>")));
    const pos = toks.map((_, i) => i);
    Plotly.react("attention", [{
      z: w, x: pos, y: pos, type: "heatmap", colorscale: PURPLES, zmin: 0, zmax: 1,
      text, hovertemplate: "%{text}<extra></extra>",
    }], {
      // Positions, not token names, on the axes: 2 × n_points tick labels double the time
      // the page takes to open; the hover names the tokens.
      xaxis: { title: { text: "key position (x_i at 2i, y_i at 2i + 1)" } },
      yaxis: { title: { text: "query position" }, autorange: "reversed" },
      margin: { t: 20 },
    }, CONFIG);
  };
  sampleSelect.addEventListener("change", draw);
  viewSelect.addEventListener("change", draw);
  draw();
  if (D.effects.length) effectsByPoint(D.effects);
  document.getElementById("attention").on("plotly_hover", (e) => {
    const p = e.points[0];
    info.textContent = describe(current.w, current.toks, current.labels, p.y, p.x).join("\n");
  });
}

({ index: overview, heads, head })[PAGE.page]();
