// Chart building blocks shared by the dashboard pages: one time range for every chart of a
// page (a picker from 5 min to 24 h, drag-zoom and pan synced across charts, the live edge kept
// streaming), per-pod series as min / median / max bands beyond a handful of pods, threshold
// lines labelled at their ends, and times in the server's time zone (TIME_ZONE), one format
// ("2026-12-03 13:50:02 UTC") for charts, decision cards and the admin.
"use strict";

const Charts = (function () {
  const ZONE = document.body.dataset.timeZone || "UTC";
  const RANGES = [["5 min", 300], ["15 min", 900], ["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];
  const BAND_ABOVE = 4;  // more pods than this are drawn as a band, not one line each

  // --- Time in the server's zone ---------------------------------------------------------
  // Plotly draws dates in the browser's zone and has no zone option, so each timestamp is
  // turned into the wall-clock text of TIME_ZONE and the axis title names the zone.
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone: ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short",
  });
  const offsets = new Map();  // quarter hour -> the zone's offset from UTC, seconds

  function pieces(t) {
    const p = {};
    for (const part of parts.formatToParts(new Date(t * 1000))) p[part.type] = part.value;
    return p;
  }
  // Intl is slow (tens of microseconds a call): it is asked once per quarter hour (offsets
  // change on quarter hours at most) and each timestamp is shifted by that offset.
  function offsetAt(t) {
    const quarter = Math.floor(t / 900);
    let offset = offsets.get(quarter);
    if (offset === undefined) {
      const at = quarter * 900;
      const p = pieces(at);
      const asUtc = Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) / 1000;
      offset = asUtc - at;
      if (offsets.size > 1000) offsets.clear();
      offsets.set(quarter, offset);
    }
    return offset;
  }
  function wall(t) {  // epoch seconds -> "YYYY-MM-DD HH:MM:SS" in TIME_ZONE, for Plotly
    const s = Math.floor(t);
    return new Date((s + offsetAt(s)) * 1000).toISOString().slice(0, 19).replace("T", " ");
  }
  function formatTime(t) {  // the one format shown to people: "2026-12-03 13:50:02 UTC"
    return wall(t) + " " + pieces(t).timeZoneName;
  }
  function zoneName() { return pieces(Date.now() / 1000).timeZoneName; }

  // --- One range for every chart of the page --------------------------------------------
  // ``span`` seconds ending at the live edge, unless the operator zoomed or panned: then
  // ``pinned`` holds that window [t0, t1] (epoch seconds) until "back to live" or a range
  // button returns to the edge.
  const state = { span: 300, pinned: null, charts: [], onChange: [], syncing: false };

  function fromWall(text) {  // a Plotly axis value (wall clock in TIME_ZONE) -> epoch seconds
    const asUtc = Date.parse(String(text).replace(" ", "T") + "Z") / 1000;
    const now = Date.now() / 1000;
    const offset = Date.parse(wall(now).replace(" ", "T") + "Z") / 1000 - Math.floor(now);
    return asUtc - offset;
  }

  function windowAt(now) {
    return state.pinned || [now - state.span, now];
  }

  function xaxis(now) {
    const [t0, t1] = windowAt(now);
    return { type: "date", range: [wall(t0), wall(t1)], title: { text: "time (" + zoneName() + ")", standoff: 4 },
      tickformat: t1 - t0 > 3600 ? "%H:%M" : "%H:%M:%S" };
  }

  function changed() {
    const live = document.getElementById("range-live");
    if (live) live.hidden = state.pinned === null;
    state.onChange.forEach((fn) => fn());
  }

  function setSpan(seconds) {
    state.span = seconds;
    state.pinned = null;
    for (const b of document.querySelectorAll("#range-picker [data-span]")) {
      b.classList.toggle("on", Number(b.dataset.span) === seconds);
    }
    changed();
  }

  function pan(fraction) {  // move the window by a fraction of its width (negative: back)
    const [t0, t1] = windowAt(Date.now() / 1000);
    const step = (t1 - t0) * fraction;
    state.pinned = [t0 + step, t1 + step];
    if (state.pinned[1] >= Date.now() / 1000) state.pinned = null;  // reached the live edge
    changed();
  }

  // Drag-zoom on one chart moves all of them; a double click (autorange) returns to live.
  function sync(div) {
    if (state.charts.includes(div)) return;
    state.charts.push(div);
    div.on("plotly_relayout", (ev) => {
      if (state.syncing) return;
      if (ev["xaxis.autorange"]) { state.pinned = null; changed(); return; }
      const x0 = ev["xaxis.range[0]"] || (ev["xaxis.range"] || [])[0];
      const x1 = ev["xaxis.range[1]"] || (ev["xaxis.range"] || [])[1];
      if (x0 === undefined || x1 === undefined) return;
      state.pinned = [fromWall(x0), fromWall(x1)];
      state.syncing = true;
      try { changed(); } finally { state.syncing = false; }
    });
  }

  function button(label, onClick, attrs) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    Object.assign(b, attrs || {});
    b.addEventListener("click", onClick);
    return b;
  }

  function picker(onChange) {
    state.onChange.push(onChange);
    const box = document.getElementById("range-picker");
    if (!box || box.dataset.built) return;
    box.dataset.built = "1";
    box.appendChild(button("◀", () => pan(-0.5), { title: "Earlier (half a window)", id: "range-back" }));
    for (const [label, seconds] of RANGES) {
      const b = button(label, () => setSpan(seconds), { className: seconds === state.span ? "on" : "" });
      b.dataset.span = seconds;
      box.appendChild(b);
    }
    box.appendChild(button("▶", () => pan(0.5), { title: "Later (half a window)", id: "range-forward" }));
    box.appendChild(button("back to live", () => setSpan(state.span), { id: "range-live", hidden: true }));
  }

  // The page holds what its live stream sent since it opened (a snapshot of recent points,
  // then one per tick). A range reaching further back reads the workload's stored signal
  // history (GET <page>/history/, dashboard.ranges: replicas, the policy metric, TTFT p95, at
  // most ~900 points, and the decisions of the window) for the part before the first
  // streamed point. One request at a time, the newest wins; a window the last answer covers
  // (to within a minute, so the live edge sliding on does not refetch) is not asked again.
  const history = { body: null, since: null, until: null, asked: null, abort: null };
  const COVER_SLACK_S = 60;

  function olderPoints(points, url, redraw) {
    const now = Date.now() / 1000;
    const first = points.length ? points[0].t : now;
    const [t0, t1] = windowAt(now);
    const note = document.getElementById("range-note");
    if (t0 >= first - 5) {
      if (note) note.textContent = "";
      return null;
    }
    const until = Math.min(t1, first);
    const covered = history.since !== null && history.since <= t0 + COVER_SLACK_S && history.until >= until - COVER_SLACK_S;
    const asked = history.asked && history.asked[0] <= t0 + COVER_SLACK_S && history.asked[1] >= until - COVER_SLACK_S;
    if (!covered && !asked && url) fetchHistory(url, t0, until, redraw);
    if (note) {
      note.textContent = "Before " + formatTime(first) + ": the stored signal history (replicas, " +
        "the policy metric and TTFT p95" + (history.body ? ", every " + history.body.step_s + " s" : ", loading…") +
        "). Per-pod GPU series and queue counts are not stored: those charts start at " + formatTime(first) + ".";
    }
    return history.body;
  }

  async function fetchHistory(url, since, until, redraw) {
    if (history.abort) history.abort.abort();
    history.abort = new AbortController();
    history.asked = [since, until];
    const query = "?since=" + encodeURIComponent(since) + "&until=" + encodeURIComponent(until);
    let response;
    try {
      response = await fetch(url + query, { credentials: "same-origin", signal: history.abort.signal,
        headers: { Accept: "application/json" } });
    } catch (err) {
      if (err.name === "AbortError") return;
      history.asked = null;
      throw err;
    }
    if (!response.ok) { history.asked = null; return; }
    const body = await response.json();
    Object.assign(history, { body: body, since: body.since, until: body.until, asked: null });
    redraw(body);
  }

  // A stored series as a trace beside the live one: only the part before ``first``
  // (the live points take over there).
  function storedTrace(body, key, first, name, look) {
    const x = [], y = [];
    if (body) {
      for (let i = 0; i < body.t.length; i++) {
        if (body.t[i] >= first) break;
        x.push(wall(body.t[i]));
        y.push(body[key][i]);
      }
    }
    return { type: "scatter", mode: "lines", name: name, x: x, y: y, connectgaps: false,
      showlegend: x.length > 0, line: Object.assign({ width: 1.5 }, look || {}), stored: true };
  }

  // On charts the history cannot fill: said on the chart, not left as an unexplained void.
  function notStored(first, t0) {
    if (t0 >= first - 5) return [];
    return [{ xref: "paper", yref: "paper", x: 0, y: 1, xanchor: "left", yanchor: "top", showarrow: false,
      text: "not stored: drawn from " + formatTime(first), name: "not-stored",
      font: { color: "#667085", size: 11 }, bgcolor: "rgba(255,255,255,0.85)" }];
  }

  // At most MAX_DRAWN points per chart: a day at 1 Hz would take seconds to draw each tick.
  // A point is kept when its second is a multiple of ``step`` (so the kept points stay put as
  // the live edge moves on, no shimmer), and the newest always. Peaks between kept points are
  // not drawn: a longer range reads as a trend.
  const MAX_DRAWN = 900;
  function thin(points) {
    if (points.length <= MAX_DRAWN) return points;
    const step = Math.ceil((points[points.length - 1].t - points[0].t) / MAX_DRAWN) || 1;
    const last = points.length - 1;
    return points.filter((p, i) => i === last || Math.floor(p.t) % step === 0);
  }

  // --- Per-pod series -------------------------------------------------------------------
  // A handful of pods: one line each. More: the median as a line inside the min-max band,
  // every pod's value listed on hover (Grafana's "series overrides" look, without a tangle).
  function perPod(points, key, unit, scale) {
    const k = scale || 1;
    const pods = new Set();
    for (const p of points) for (const pod of Object.keys(p.values[key] || {})) pods.add(pod);
    const x = points.map((p) => wall(p.t));
    const names = [...pods].sort();
    if (names.length <= BAND_ABOVE) {
      return names.map((pod) => ({
        type: "scatter", mode: "lines", name: pod.split("-").slice(-1)[0], connectgaps: false, x: x,
        y: points.map((p) => (p.values[key] && pod in p.values[key] ? p.values[key][pod] / k : null)),
        hovertemplate: pod + ": %{y:.1f}" + unit + "<extra></extra>",
      }));
    }
    return band(points, key, unit, k, x, names.length);
  }

  function band(points, key, unit, k, x, count) {
    const low = [], mid = [], high = [], text = [];
    for (const p of points) {
      const entries = Object.entries(p.values[key] || {}).filter(([, v]) => v !== null)
        .map(([pod, v]) => [pod, v / k]).sort((a, b) => b[1] - a[1]);
      if (!entries.length) { low.push(null); mid.push(null); high.push(null); text.push(""); continue; }
      const values = entries.map((e) => e[1]);
      high.push(values[0]);
      low.push(values[values.length - 1]);
      mid.push(median(values));
      text.push(entries.map(([pod, v]) => pod + ": " + v.toFixed(1) + unit).join("<br>"));
    }
    const edge = { type: "scatter", mode: "lines", x: x, connectgaps: false, hoverinfo: "skip",
      line: { width: 0.5, color: "rgba(49,86,211,0.5)" }, showlegend: false };
    return [
      Object.assign({}, edge, { name: "max", y: high, band: "max" }),
      Object.assign({}, edge, { name: "min–max of " + count + " pods", y: low, fill: "tonexty",
        fillcolor: "rgba(49,86,211,0.18)", showlegend: true, band: "min" }),
      { type: "scatter", mode: "lines", name: "median", x: x, y: mid, connectgaps: false, band: "median",
        line: { color: "#3156d3", width: 2 }, text: text,
        hovertemplate: "median %{y:.1f}" + unit + "<br>%{text}<extra></extra>" },
    ];
  }

  function median(sortedDesc) {
    const n = sortedDesc.length;
    return n % 2 ? sortedDesc[(n - 1) / 2] : (sortedDesc[n / 2 - 1] + sortedDesc[n / 2]) / 2;
  }

  // --- Threshold lines ------------------------------------------------------------------
  // Target solid, scale-up dashed red, scale-down dotted green, each labelled at its right
  // end; the y range is set so the three stay apart however far the metric wanders.
  const LINES = [
    ["target", "target", "#3156d3", "solid", 0],
    ["upper", "scale up above", "#d92d20", "dash", 12],
    ["lower", "scale down below", "#12b76a", "dot", -12],
  ];

  function thresholds(policy, values) {
    // predictive and slo may have no target: they size from offered work, not a threshold
    if (!policy || policy.target === null) return { shapes: [], annotations: [] };
    const shapes = LINES.map(([key, , color, dash]) => ({
      type: "line", xref: "paper", x0: 0, x1: 1, y0: policy[key], y1: policy[key],
      line: { color: color, width: 2, dash: dash },
    }));
    const annotations = LINES.map(([key, label, color, , shift]) => ({
      xref: "paper", x: 1, xanchor: "left", y: policy[key], yanchor: "middle", yshift: shift,
      text: label + " " + String(Number(Number(policy[key]).toFixed(3))), showarrow: false, font: { color: color, size: 11 },
      name: key,
    }));
    const range = thresholdRange(policy, values);
    return { shapes: shapes, annotations: annotations.concat(offScale(values, range)), range: range };
  }

  // The latest value when the clipped range cannot show it: said at the chart's edge, so a
  // metric far above (or below) its target is never mistaken for one near it.
  function offScale(values, range) {
    const last = [...values].reverse().find((v) => v !== null && Number.isFinite(v));
    if (last === undefined || (last >= range[0] && last <= range[1])) return [];
    const above = last > range[1];
    return [{ xref: "paper", x: 0.98, xanchor: "right", yref: "paper", y: above ? 1 : 0,
      yanchor: above ? "top" : "bottom", showarrow: false, name: "off-scale",
      text: (above ? "▲ " : "▼ ") + "now " + String(Number(last.toFixed(3))) + ", off the scale",
      font: { color: "#101828", size: 11 }, bgcolor: "rgba(255,255,255,0.85)" }];
  }

  function thresholdRange(policy, values) {
    // The band between the lines takes at least a third of the height: the data's range is
    // clipped to 3 band-widths either side (the hover still reads the true value).
    const gap = Math.max(policy.upper - policy.lower, Math.abs(policy.target) * 0.05, 1e-9);
    const seen = values.filter((v) => v !== null && Number.isFinite(v));
    const lo = Math.min(policy.lower - gap, ...seen.map((v) => Math.max(v, policy.lower - 3 * gap)));
    const hi = Math.max(policy.upper + gap, ...seen.map((v) => Math.min(v, policy.upper + 3 * gap)));
    // A metric that cannot go negative gets no negative axis.
    return [policy.lower >= 0 && seen.every((v) => v >= 0) ? Math.max(lo, 0) : lo, hi];
  }

  // --- Axis units -----------------------------------------------------------------------
  // GPU memory in GiB on a 0..capacity axis: a flat line reads "72.0 GiB", never
  // "73.727k-73.729k".
  function memoryAxis(capacityGib) {
    const top = capacityGib > 0 ? capacityGib : undefined;
    return { range: top ? [0, top] : undefined, rangemode: "tozero", tickformat: ".0f",
      ticksuffix: " GiB", autorange: top ? false : true };
  }

  return { wall, thin, formatTime, zoneName, xaxis, windowAt, sync, picker, olderPoints, storedTrace, notStored, perPod, thresholds,
    memoryAxis, state, BAND_ABOVE };
})();
