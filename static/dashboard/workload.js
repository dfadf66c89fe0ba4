// The workload page: live charts fed by /ws/workloads/<id>/ (snapshot, then 1 Hz deltas),
// the policy's target and tolerance band drawn as lines that move as soon as any browser
// saves the policy, the decision timeline, and the policy editor (saved with fetch).
"use strict";

(function () {
  const page = document.getElementById("workload-page");
  const MAX_POINTS = 86400;  // 24 h at 1 Hz: the picker's longest range
  const policyData = document.getElementById("policy-data");
  let policy = policyData ? JSON.parse(policyData.textContent) : null;
  let points = [];  // [{t, values, stale}]
  let changes = [];  // decisions that changed or tried to change the count, for annotations
  const LAYOUT = {
    margin: { l: 50, r: 10, t: 8, b: 30 }, height: 220, showlegend: true,
    legend: { orientation: "h", y: -0.25 }, xaxis: { type: "date" },
  };
  const CONFIG = { displayModeBar: false, responsive: true };

  let drawn = [];  // the points inside the page's time range, set by draw()
  function series(key) {
    return { x: drawn.map((p) => Charts.wall(p.t)), y: drawn.map((p) => num(p.values[key])) };
  }
  function num(v) { return v === undefined || v === null ? null : v; }

  function line(key, name, extra) {
    return Object.assign({ type: "scatter", mode: "lines", name: name, connectgaps: false }, series(key), extra || {});
  }

  // Decisions drawn on the replica chart, as Grafana annotates deploys: a marker at each
  // applied, dry-run, blocked or failed change (not holds), its reason on hover.
  // Keyed by Decision.Outcome's values ("dry-run", "blocked"), as frames and history send them.
  const MARKED = {
    applied: { color: "#3156d3", name: "applied" }, "dry-run": { color: "#98a2b3", name: "dry run" },
    blocked: { color: "#d92d20", name: "blocked by quota" }, error: { color: "#f79009", name: "error" },
  };
  function noteDecision(d) {
    if (!(d.outcome in MARKED) || changes.some((c) => c.id === d.id)) return;
    changes.push(d);
    changes.sort((a, b) => a.at - b.at);
    if (changes.length > MAX_POINTS) changes.shift();
  }
  function decisionMarkers(since) {
    const shown = changes.filter((d) => d.at >= since);
    return Object.entries(MARKED).map(([outcome, look]) => {
      const these = shown.filter((d) => d.outcome === outcome);
      return {
        type: "scatter", mode: "markers", name: look.name, showlegend: these.length > 0,
        x: these.map((d) => Charts.wall(d.at)), y: these.map((d) => d.final),
        marker: { color: look.color, size: 10, line: { color: "#fff", width: 1 },
          symbol: these.map((d) => (d.final > d.current ? "triangle-up" : d.final < d.current ? "triangle-down" : "x")) },
        // A mixed pool's marker names its machines and its total's unit, as its card does.
        hovertext: these.map((d) => Charts.formatTime(d.at) + ": " +
          (d.wanted ? "→ " + d.wanted + ", policy total " : "") + d.current + " → " + d.final +
          (d.unit ? " " + d.unit : "") + " (policy v" + d.policy_version + "): " + d.reason),
        hoverinfo: "text",
      };
    });
  }

  // Every chart shares the page's time range (Charts.xaxis): the picker, a drag-zoom or a pan
  // on any of them moves them all, and at the live edge each delta slides the window on.
  const CHARTS = ["chart-replicas", "chart-metric", "chart-ttft", "chart-queue", "chart-gpu-util", "chart-gpu-mem"];

  // Zoom and pan act on time only (the y ranges are chosen per chart), as in Grafana.
  function layout(now, extra) {
    const merged = Object.assign({}, LAYOUT, { xaxis: Charts.xaxis(now) }, extra || {});
    merged.yaxis = Object.assign({ fixedrange: true }, merged.yaxis || {});
    return merged;
  }

  // Only the points inside the window are drawn, thinned: a page open for hours keeps a day.
  function shown(now) {
    const [t0, t1] = Charts.windowAt(now);
    return Charts.thin(points.filter((p) => p.t >= t0 - 1 && p.t <= t1 + 1));
  }

  // Older than the first streamed point, the stored history (Charts.olderPoints) is drawn
  // in grey beside the live lines: replicas, the metric and TTFT; the decisions of its window join
  // the markers. The page's own URL + "history/" is dashboard.views.history.
  const HISTORY_URL = location.pathname.replace(/\/?$/, "/") + "history/";
  function onHistory(body) {
    (body.decisions || []).forEach(noteDecision);
    draw();
  }

  // A chart with nothing to draw in its range says so: an empty axis reads like zeros.
  const NO_DATA = { xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, name: "no-data",
    text: "No data yet in this range", font: { color: "#667085", size: 13 } };
  function react(id, traces, lay) {
    const known = (v) => typeof v === "number" && Number.isFinite(v);
    if (!traces.some((t) => (t.y || []).some(known))) {
      lay = Object.assign({}, lay, { annotations: [...(lay.annotations || []), NO_DATA],
        yaxis: Object.assign({}, lay.yaxis || {}, { showticklabels: false }) });
    }
    Plotly.react(id, traces, lay, CONFIG);
  }

  function draw() { drawCharts(false); }

  // linesOnly: an edit moved the threshold lines, which only the metric chart draws; the
  // other charts did not change, so they are not redrawn on every keystroke.
  function drawCharts(linesOnly) {
    const metricDiv = document.getElementById("chart-metric");
    const now = points.length ? points[points.length - 1].t : Date.now() / 1000;
    drawn = shown(now);
    const t0 = Charts.windowAt(now)[0];
    const first = points.length ? points[0].t : Date.now() / 1000;
    const stored = Charts.olderPoints(points, HISTORY_URL, onHistory);
    const behind = (key, name, look) => Charts.storedTrace(stored, key, first, name, look);
    const storedMetric = stored ? stored.metric.filter((v, i) => stored.t[i] >= t0 && stored.t[i] < first) : [];
    // The edited values' lines while the operator types (linesShown), else the saved policy's.
    const lines = Charts.thresholds(linesShown(), storedMetric.concat(drawn.map((p) => num(p.values.metric))));
    const memory = Number(document.getElementById("chart-gpu-mem").dataset.capacityGib || 0);
    const unstored = Charts.notStored(first, t0);
    // The stored traces come after the live ones (they never overlap in time: the stored part
    // ends where the stream begins), so data[0] stays the live series.
    if (!linesOnly) {
      react("chart-replicas", [line("ready", "ready", { line: { shape: "hv" } }),
        line("warming", "warming", { line: { shape: "hv" } }),
        behind("ready", "ready (stored)", { shape: "hv", color: "#98a2b3" }), ...decisionMarkers(t0)], layout(now));
    }
    react(metricDiv, [line("metric", policy ? policy.metric : "metric", { line: { color: "#101828" } }),
      behind("metric", "stored", { color: "#98a2b3" })],
      layout(now, { shapes: lines.shapes, annotations: lines.annotations, margin: Object.assign({}, LAYOUT.margin, { r: 130 }),
        yaxis: lines.range ? { range: lines.range } : {} }));
    if (!linesOnly) {
      react("chart-ttft", [line("ttft_p95", "TTFT p95"), behind("ttft_p95", "TTFT p95 (stored)", { color: "#98a2b3" })],
        layout(now));
      react("chart-queue", [line("queue", "waiting"), line("running", "running")],
        layout(now, { annotations: unstored }));
      react("chart-gpu-util", Charts.perPod(drawn, "gpu_util", " %"),
        layout(now, { yaxis: { range: [0, 100], ticksuffix: " %" }, annotations: unstored }));
      react("chart-gpu-mem", Charts.perPod(drawn, "gpu_mem", " GiB", 1024),
        layout(now, { yaxis: Charts.memoryAxis(memory), annotations: unstored }));
    }
    CHARTS.forEach((id) => Charts.sync(document.getElementById(id)));
    if (policy) {
      metricDiv.dataset.target = policy.target;
      metricDiv.dataset.upper = policy.upper;
      metricDiv.dataset.lower = policy.lower;
      metricDiv.dataset.version = policy.version;
    }
    const stale = new Set(points.length ? points[points.length - 1].stale : []);
    for (const badge of document.querySelectorAll(".stale-badge")) {
      badge.classList.toggle("on", stale.has(badge.dataset.chart) ||
        (badge.dataset.chart === "replicas" && stale.has("ready")) ||
        (badge.dataset.chart === "ttft" && stale.has("ttft_p95")));
    }
  }

  function setPolicy(next) {
    if (!next) return;
    policy = next;
    const version = document.getElementById("policy-version");
    if (version) version.textContent = "v" + next.version;
  }

  // The "GPU types" section (dashboard/_gpu_types.html): each type's ready / desired, its pin
  // warning and the mix line follow the frames as the charts do.
  function drawGpuTypes(frame) {
    const section = document.getElementById("gpu-types");
    if (!section || !frame.types) return;
    for (const t of frame.types) {
      const row = section.querySelector('tr[data-gpu-type="' + t.gpu_type + '"]');
      if (!row) continue;
      drawTypeCounts(row.querySelector('[data-field="ready-desired"]'), t, " / ");
      const warning = row.querySelector('[data-field="warning"]');
      warning.textContent = t.warning;
      warning.classList.toggle("error", Boolean(t.warning));
    }
    const mix = document.getElementById("mix-line");
    if (frame.mix && mix.dataset.mix !== frame.mix) {
      mix.dataset.mix = frame.mix;
      mix.className = "";
      mix.textContent = frame.mix;
    }
    section.dataset.frames = String(Number(section.dataset.frames || 0) + 1);
  }

  function onFrame(frame) {
    if (frame.type === "snapshot" || frame.type === "delta") drawGpuTypes(frame);
    if (frame.type === "snapshot") {
      points = frame.history.slice(-MAX_POINTS);
      if (frame.policy) setPolicy(frame.policy);
      (frame.decisions || []).forEach((d) => { addDecision("decisions", d); noteDecision(d); });
    } else if (frame.type === "delta") {
      points.push({ t: frame.t, values: frame.values, stale: frame.stale });
      if (points.length > MAX_POINTS) points.shift();
      if (frame.policy && (!policy || frame.policy.version !== policy.version || frame.policy.target !== policy.target)) {
        setPolicy(frame.policy);
      }
    } else if (frame.type === "decision") {
      addDecision("decisions", frame.decision);
      noteDecision(frame.decision);  // its marker is drawn at once
    } else {
      return;  // "stale" frames: the next delta's nulls and stale list redraw the gaps
    }
    draw();
    page.dataset.frames = String(Number(page.dataset.frames || 0) + 1);
  }

  // --- The policy editor ------------------------------------------------------------------
  const form = document.getElementById("policy-form");

  function showErrors(errors) {
    for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
    document.getElementById("form-errors").textContent = "";
    for (const [field, list] of Object.entries(errors || {})) {
      const text = list.map((e) => e.message || e).join(" ");
      const el = form.querySelector('[data-error-for="' + field + '"]');
      if (el) el.textContent = text; else document.getElementById("form-errors").textContent += text + " ";
    }
  }

  function hints() {
    // Quick checks while typing; the server's full_clean has the last word.
    const errors = {};
    const value = (name) => form.elements[name] && form.elements[name].value;
    if (value("target") !== "" && !(Number(value("target")) > 0)) errors.target = ["The target must be greater than 0."];
    if (Number(value("min_replicas")) > Number(value("max_replicas"))) errors.max_replicas = ["Min replicas cannot be above max replicas."];
    for (const name of ["scale_up_tolerance", "scale_down_tolerance"]) {
      const v = value(name);
      if (v !== "" && v !== undefined && !(Number(v) >= 0 && Number(v) <= 1)) errors[name] = ["Between 0 and 1."];
    }
    showErrors(errors);
  }

  function showConflict(body) {
    const box = document.getElementById("policy-conflict");
    box.hidden = false;
    box.replaceChildren();
    const p = document.createElement("p");
    p.textContent = body.message;
    const ul = document.createElement("ul");
    for (const [name, change] of Object.entries(body.changed)) {
      const li = document.createElement("li");
      li.textContent = name + ": " + change.yours_loaded + " → " + change.stored;
      ul.appendChild(li);
    }
    box.append(p, ul);
  }

  async function save(event) {
    event.preventDefault();
    const saved = document.getElementById("policy-saved");
    saved.textContent = "saving…";
    const response = await fetch(location.pathname, {
      method: "POST", body: new FormData(form), headers: { Accept: "application/json" },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    saved.textContent = "";
    if (response.status === 400) { showErrors(body.errors); return; }
    if (response.status === 409) {
      showConflict(body);
      form.elements.version.value = body.version;  // a second save is deliberate
      form.elements.loaded.value = JSON.stringify(body.loaded);
      return;
    }
    if (!response.ok) { showErrors({ __all__: ["Saving failed (" + response.status + ")."] }); return; }
    showErrors({});
    document.getElementById("policy-conflict").hidden = true;
    form.elements.version.value = body.version;
    form.elements.loaded.value = JSON.stringify(body.loaded);
    saved.textContent = "Saved version " + body.version + "; it takes effect at the next tick.";
    setPolicy(body.policy);
    draft = null;  // the saved policy is what the lines show now
    draw();
  }

  // --- Live what-if: lines and the replay follow the editor, before any Save ---------------
  // The threshold lines move at once (computed here, as dashboard.policies.policy_view does);
  // the replica curve of the edited policy on this workload's stored signals follows from
  // the server (scaling.whatif.signal_whatif).
  // No debounce: an edit is sent at once unless an answer is being computed (a predictive
  // replay of an hour takes a few hundred ms); then only the newest edit waits and goes when
  // that answer lands, so the server computes at most one what-if per page at a time and
  // edits typed meanwhile are never sent. An answer is drawn only if no newer edit was made
  // since it was asked (a slow old answer never overwrites a newer one): one Plotly.react
  // per answer drawn.
  let draft = null;  // {target, upper, lower, metric} while the editor differs from the saved policy
  let whatifEdit = 0;  // the newest edit's number
  let whatifBusy = false;  // an answer is being computed
  let whatifWaiting = false;  // an edit came while it was

  function linesShown() { return draft || policy; }

  function draftLines() {
    const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : "");
    const target = Number(value("target"));
    if (value("target") === "" || !(target > 0) || !Number.isFinite(target)) return null;
    const defaults = JSON.parse(document.getElementById("tolerance-defaults").textContent)[value("algorithm")] || { up: 0, down: 0 };
    const tolerance = (name, fallback) => (value(name) === "" ? fallback : Number(value(name)));
    const up = tolerance("scale_up_tolerance", defaults.up);
    const down = tolerance("scale_down_tolerance", defaults.down);
    if (!Number.isFinite(up) || !Number.isFinite(down)) return null;
    return Object.assign({}, policy, { target: target, upper: target * (1 + up), lower: target * (1 - down) });
  }

  function onEdit() {
    requestWhatif();  // first: the request is on its way while the lines are drawn
    hints();
    draft = draftLines();
    drawCharts(true);
    const metricDiv = document.getElementById("chart-metric");
    metricDiv.dataset.shownTarget = draft ? draft.target : (policy ? policy.target : "");
  }

  function requestWhatif() {
    whatifEdit += 1;
    if (whatifBusy) { whatifWaiting = true; return; }
    sendWhatif();
  }

  async function sendWhatif() {
    const edit = whatifEdit;
    whatifBusy = true;
    whatifWaiting = false;
    const section = document.getElementById("whatif-section");
    const data = new FormData(form);  // the editor as it is now, the waiting edits included
    data.set("window", document.getElementById("whatif-window").value);
    const asked = { target: String(data.get("target")), window: String(data.get("window")) };
    const started = performance.now();
    let response = null;
    let body = {};
    try {
      response = await fetch(section.dataset.url, { method: "POST", body: data, credentials: "same-origin",
        headers: { Accept: "application/json" } });
      body = await response.json().catch(() => ({}));
    } catch (err) {
      response = null;  // the network failed: the next edit asks again
    } finally {
      whatifBusy = false;
    }
    if (whatifWaiting) sendWhatif();
    if (edit !== whatifEdit || response === null) return;  // stale, or no answer
    if (response.status === 400) { showErrors(body.errors); return; }
    if (!response.ok) return;
    drawWhatif(body, performance.now() - started, asked);
  }

  function drawWhatif(body, roundTripMs, asked) {
    const x = body.t.map((t) => new Date(t * 1000));
    const curve = (y, name, look) => ({ type: "scatter", mode: "lines", name: name, x: x, y: y, line: look });
    Plotly.react("chart-whatif", [curve(body.observed, "observed replicas", { shape: "hv", color: "#111827", dash: "dot" }),
      curve(body.whatif, "edited policy (what-if)", { shape: "hv", color: "#3156d3" })],
    Object.assign({}, LAYOUT, { xaxis: { type: "date" } }), CONFIG);
    const chart = document.getElementById("chart-whatif");
    chart.dataset.redraws = String(Number(chart.dataset.redraws || 0) + 1);
    chart.dataset.whatif = JSON.stringify(body.whatif);
    chart.dataset.drawnFor = JSON.stringify(asked);  // which edit this answer is for
    const s = body.summary;
    // Money beside GPU-hours in the server's words (scaling.whatif: the trace preview's);
    // where it cannot be priced (a pool of several GPU types), the server's note says why.
    const gpuHours = (c) => fmt(c.gpu_hours, 2) + " GPU-hours" + (c.cost_text ? " (" + c.cost_text + ")" : "");
    const text = body.t.length === 0
      ? "No stored signals in this window yet: the control loop records them every tick."
      : "Observed: " + s.observed.scale_events + " scale events, " + gpuHours(s.observed) + ". " +
        "Edited policy: " + s.whatif.scale_events + " scale events, " + gpuHours(s.whatif) + " (" +
        body.t.length + " ticks replayed). " + (body.cost_note ? body.cost_note + " " : "") + sloText(body);
    document.getElementById("whatif-summary").textContent = text;
    document.getElementById("whatif-timing").textContent = "server " + fmt(body.server_ms, 0) + " ms, round trip " + fmt(roundTripMs, 0) + " ms";
  }

  // The SLO estimate (dashboard.preview.slo_estimate) is labelled an estimate; where the
  // stored signals cannot give one, the server's reason is shown instead of a number.
  function sloText(body) {
    if (!body.slo) return body.slo_note || "";
    const pct = (v) => (100 * v).toFixed(1) + " %";
    return "TTFT p95 within " + fmt(body.slo.objective_s, 2) + " s: observed " + pct(body.slo.observed) +
      " of " + body.slo.ticks + " ticks, edited policy about " + pct(body.slo.whatif) +
      " (an estimate from the stored TTFT and queueing p95, not a replay).";
  }

  // --- What-if preview: progress lines, then both replica curves ---------------------------
  function summary(name, r) {
    const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %");
    // Money beside GPU-hours; "assumed" when the GPU type has no hourly cost set.
    const cost = r.cost_per_hour === null || r.cost_per_hour === undefined ? "" :
      " ($" + fmt(r.cost_per_hour, 2) + "/h, $" + fmt(r.cost_per_1k_requests, 3) + " per 1k requests" +
      (r.price_source === "assumed" ? " at an assumed $" + fmt(r.price_per_gpu_hour, 2) + "/GPU-h" : "") + ")";
    return name + ": SLO attainment " + pct(r.slo_attainment) + ", " + fmt(r.gpu_hours, 2) +
      " GPU-hours" + cost + ", mean " + fmt(r.mean_replicas, 2) + " replicas, " + r.scale_events + " scale events";
  }

  function drawPreview(result) {
    document.getElementById("preview-section").hidden = false;
    const curve = (r, name, color) => ({
      type: "scatter", mode: "lines", name: name, line: { shape: "hv", color: color },
      x: r.timeline.map((p) => p.t / 60), y: r.timeline.map((p) => p.replicas),
    });
    const curves = [curve(result.edited, "edited (preview)", "#3156d3"),
      curve(result.stored, "stored policy", "#98a2b3")];
    const lines = [summary("Edited", result.edited), summary("Stored", result.stored)];
    let axis = "minutes into the trace";
    if (result.actual) {  // the workload's observed hour: draw what really served
      curves.push(Object.assign(curve(result.actual, "actual (observed)", "#111827"), { line: { shape: "hv", color: "#111827", dash: "dot" } }));
      axis = "minutes into the observed window";
      lines.unshift("Observed: " + result.actual.requests + " requests in " +
        fmt(result.actual.duration_s / 60, 1) + " min, replayed through both policies.");
    }
    Plotly.react("chart-preview", curves,
      Object.assign({}, LAYOUT, { xaxis: { title: { text: axis } } }), CONFIG);
    const box = document.getElementById("preview-summary");
    box.replaceChildren(...lines.map((t) => {
      const p = document.createElement("p");
      p.textContent = t;
      return p;
    }));
  }

  async function runPreview() {
    const button = document.getElementById("preview-run");
    const bar = document.getElementById("preview-progress");
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    try {
      const response = await fetch(button.dataset.url, { method: "POST", body: new FormData(form),
        headers: { Accept: "application/x-ndjson" }, credentials: "same-origin" });
      if (response.status === 400) { showErrors((await response.json()).errors); return; }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf("\n")) >= 0) {
          const line = JSON.parse(buffer.slice(0, nl));
          buffer = buffer.slice(nl + 1);
          if ("progress" in line) bar.value = line.progress;
          if (line.result) { bar.value = 1; drawPreview(line.result); }
          if (line.error) { bar.hidden = true; showErrors({ trace: [line.error] }); }
        }
      }
    } finally {
      button.disabled = false;
    }
  }

  if (form) {
    document.getElementById("preview-run").addEventListener("click", runPreview);
    form.addEventListener("submit", save);
    form.addEventListener("input", onEdit);
    document.getElementById("whatif-window").addEventListener("change", requestWhatif);
    requestWhatif();
  }
  Charts.picker(draw);
  draw();
  openLiveStream(page.dataset.stream, onFrame);
})();
