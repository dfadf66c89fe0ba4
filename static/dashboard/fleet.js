// The fleet page: a live utilisation heatmap (one row per host, one column per GPU), totals,
// per-cluster counts, live workload values and decisions. Stale or hidden GPUs are gaps.
"use strict";

(function () {
  const STATE_TEXT = { other: "held by another tenant", stale: "stale: no recent sample" };
  let layout = null;  // [[cluster, host, gpu, model], ...]: which GPU each column describes
  let layoutId = null;

  function cellsOf(frame) {
    return layout.map(([cluster, host, gpu, model], i) => ({
      cluster: cluster, host: host, gpu: gpu, model: model, util: frame.util[i],
      memory_mib: frame.memory_mib[i], state: frame.state[i], workload: frame.workload[i],
    }));
  }

  function heatmap(cells) {
    const rows = [...new Set(cells.map((c) => c.cluster + " / " + c.host))];
    const cols = [...new Set(cells.map((c) => Number(c.gpu)))].sort((a, b) => a - b);
    const z = rows.map(() => cols.map(() => null));
    const text = rows.map(() => cols.map(() => ""));
    for (const c of cells) {
      const r = rows.indexOf(c.cluster + " / " + c.host);
      const k = cols.indexOf(Number(c.gpu));
      z[r][k] = c.util;
      text[r][k] = c.model + " GPU " + c.gpu + "<br>" + (STATE_TEXT[c.state] || c.state) +
        (c.util === null ? "" : "<br>" + fmt(c.util) + " %" +
          (c.memory_mib === null ? "" : ", " + fmt(c.memory_mib / 1024) + " GiB"));
    }
    const height = Math.max(200, 26 * rows.length + 60);  // dashboard.views.fleet pre-sizes alike
    // Size the box too: Plotly's responsive mode sizes the plot to its box, not the reverse.
    document.getElementById("heatmap").style.height = height + "px";
    Plotly.react("heatmap", [{
      type: "heatmap", z: z, x: cols.map((c) => "GPU " + c), y: rows, text: text,
      hoverinfo: "text+y", zmin: 0, zmax: 100, colorscale: "Viridis", hoverongaps: false,
      colorbar: { title: { text: "%" } }, xgap: 2, ygap: 2,
    }], {
      margin: { l: 170, r: 20, t: 10, b: 30 }, height: height,
      plot_bgcolor: "#d0d5dd", yaxis: { autorange: "reversed" },
    }, { displayModeBar: false, responsive: true });
  }

  function totals(body) {
    for (const [key, value] of Object.entries(body.totals.overall)) {
      const el = document.querySelector('[data-total="' + key + '"]');
      if (el) el.textContent = value;
    }
    const tbody = document.querySelector("#gpu-groups tbody");
    tbody.replaceChildren(...body.totals.groups.map((g) => {
      const tr = document.createElement("tr");
      for (const v of [g.cluster, g.model, g.total, g.busy, g.warming, g.idle]) {
        const td = document.createElement("td");
        td.textContent = v;
        if (typeof v === "number") td.className = "num";
        tr.appendChild(td);
      }
      return tr;
    }));
    const note = document.getElementById("heatmap-note");
    note.textContent = body.stale.length ? "stale: " + body.stale.join(", ") : "";
  }

  function onFrame(frame) {
    if (frame.type === "snapshot" || frame.type === "delta") {
      if (frame.layout) { layout = frame.layout; layoutId = frame.layout_id; }
      if (frame.layout_id !== layoutId) { window.liveStream.drop(); return; }  // missed a layout: resync
      heatmap(cellsOf(frame));
      totals(frame);
      updateWorkloadRows(frame.workloads);
      updateUsage(frame.usage);
      if (frame.type === "snapshot") (frame.decisions || []).forEach((d) => addDecision("decisions", d));
      document.body.dataset.lastFrame = frame.t;
    } else if (frame.type === "decision") {
      addDecision("decisions", frame.decision);
    }
  }

  openLiveStream("/ws/fleet/", onFrame);
})();
