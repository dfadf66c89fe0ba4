// A live stream with reconnection: exponential backoff with jitter (0.5 s doubling to 30 s),
// and each (re)connection starts from the snapshot the server sends first.
// Close codes 4401 (log in) and 4404 (no access) are final: retrying cannot help.
"use strict";

function openLiveStream(path, onFrame) {
  const status = document.getElementById("live-status");
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  let delay = 500;
  let socket = null;

  function show(text, cls) {
    if (!status) return;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  function connect() {
    show("connecting", "connecting");
    socket = new WebSocket(proto + "//" + location.host + path);
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "snapshot") { delay = 500; show("live", "live"); }
      onFrame(frame);
    };
    socket.onclose = (event) => {
      if (event.code === 4401) { show("logged out", "offline"); location.reload(); return; }
      if (event.code === 4404) { show("no access", "offline"); return; }
      const wait = delay * (0.5 + Math.random());
      show("reconnecting in " + Math.round(wait / 1000) + " s", "offline");
      delay = Math.min(delay * 2, 30000);
      setTimeout(connect, wait);
    };
  }
  connect();
  // Lets a test (or the console) drop the connection to watch the reconnect.
  window.liveStream = { drop: () => socket && socket.close() };
  return window.liveStream;
}

function fmt(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits === undefined ? 1 : digits).replace(/\.0+$/, "");
}

function decisionItem(d) {
  // Built with textContent only: reasons and notes are data, never HTML.
  const li = document.createElement("li");
  li.className = "decision outcome-" + d.outcome + " fresh";
  li.dataset.id = d.id;
  const head = document.createElement("div");
  head.className = "decision-head";
  const parts = [
    ["time", Charts.formatTime(d.at)],
    ["a", d.workload_name],
    ["span", d.outcome_label || d.outcome, "badge"], // "Applied", as the server renders it
    // A mixed pool leads with its per-type counts and names its total's unit, as
    // _decisions.html does (dashboard.replicas): "24 → 8" alone would read as 24 machines.
    ...(d.wanted ? [["span", "→ " + d.wanted, "replicas", "mix"]] : []),
    ["span", (d.unit ? "policy total " : "") + d.current + " → " + d.final + (d.unit ? " " + d.unit : ""),
      d.unit ? "muted replicas" : "replicas", "total"],
    ["span", d.algorithm + " · policy v" + d.policy_version, "muted"],
  ];
  for (const [tag, text, cls, field] of parts) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (cls) el.className = cls;
    if (field) el.dataset.field = field;
    if (tag === "a") el.href = "/workloads/" + d.workload + "/";
    head.appendChild(el);
  }
  li.appendChild(head);
  const reason = document.createElement("p");
  reason.className = "reason";
  reason.textContent = d.reason;
  li.appendChild(reason);
  if (d.steps && d.steps.length) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "How it was decided";
    details.appendChild(summary);
    const ol = document.createElement("ol");
    ol.className = "steps";
    for (const step of d.steps) {
      const item = document.createElement("li");
      item.textContent = step.name + " → " + step.value + (step.note ? " (" + step.note + ")" : "");
      ol.appendChild(item);
    }
    details.appendChild(ol);
    li.appendChild(details);
  }
  return li;
}

function addDecision(listId, d) {
  const list = document.getElementById(listId);
  if (!list || list.querySelector('[data-id="' + d.id + '"]')) return;
  const empty = list.querySelector(".empty");
  if (empty) empty.remove();
  list.prepend(decisionItem(d));
  while (list.children.length > 50) list.lastElementChild.remove();
}

// The live columns of a workloads table (fleet and tenant pages): ready, warming and the
// policy metric of each row the frame carries; a missing value is shown stale, never zero.
function updateWorkloadRows(list) {
  for (const w of list) {
    const row = document.querySelector('tr[data-workload="' + w.id + '"]');
    if (!row) continue;
    for (const key of ["ready", "warming", "metric"]) {
      const cell = row.querySelector('[data-field="' + key + '"]');
      if (cell) { cell.textContent = fmt(w[key], 2); cell.classList.toggle("stale", w[key] === null); }
    }
    for (const t of w.types || []) {
      const counts = row.querySelector('[data-field="gpu-types"] [data-gpu-type="' + t.gpu_type + '"]');
      if (counts) drawTypeCounts(counts, t, "/");
    }
  }
}

// One GPU type's ready / desired replicas of a workload on several types (the fleet and tenant
// rows, the workload page's "GPU types" table), from a frame's `types` row: ready is null when
// its Deployment's read is stale or missing, drawn as "–" in grey, never as 0.
function drawTypeCounts(el, t, sep) {
  el.textContent = fmt(t.ready, 0) + sep + (t.desired === null ? "–" : t.desired);
  el.classList.toggle("stale", t.ready === null);
  el.title = t.ready === null
    ? (t.stale ? "stale: " : "not listed: ") + "no recent read of " + t.gpu_type + "'s Deployment"
    : "ready / desired on " + t.gpu_type;
}

// The quota usage table (fleet and tenant pages, dashboard/_usage.html), redrawn from each
// frame's usage rows: GPUs held, the limits an admin just changed and the over-quota badge
// follow the loop without a reload. Cells are built as the template builds them.
function updateUsage(rows) {
  const tbody = document.querySelector("#usage tbody");
  if (!tbody || !rows) return;
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = usageCell(tr, "td", "No quotas.", "empty");
    td.colSpan = 6;
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(...rows.map(usageRow));
  tbody.closest("table").dataset.frame = String(Number(tbody.closest("table").dataset.frame || 0) + 1);
}

function usageCell(tr, tag, text, cls) {
  const el = document.createElement(tag);
  el.textContent = text;
  if (cls) el.className = cls;
  tr.appendChild(el);
  return el;
}

function usageRow(u) {
  const tr = document.createElement("tr");
  const link = document.createElement("a");
  link.href = "/tenants/" + encodeURIComponent(u.tenant) + "/";
  link.textContent = u.tenant;
  usageCell(tr, "td", "").appendChild(link);
  usageCell(tr, "td", u.gpu_type);
  usageCell(tr, "td", String(u.used), "num");
  usageCell(tr, "td", String(u.nominal), "num");
  usageCell(tr, "td", u.borrowing_limit === null ? "no limit" : String(u.borrowing_limit), "num");
  const use = usageCell(tr, "td", "");
  const meter = document.createElement("meter");
  meter.min = 0;
  meter.max = u.ceiling || u.nominal || 1;
  meter.high = u.nominal;
  meter.value = u.used;
  use.appendChild(meter);
  if (u.borrowed) use.append(" ", usageBadge("borrow", "borrowing " + u.borrowed));
  if (u.over) {
    let text = u.over + " over quota";
    if (u.over_since !== null && u.reclaim_grace_s !== null) {
      text += ", reclaimed from " + Charts.formatTime(u.over_since + u.reclaim_grace_s);
    } else if (u.reclaim_grace_s === null) {
      text += ", kept (no reclaim grace)";
    }
    const over = usageBadge("over", text);
    over.title = "The quota was lowered under what the tenant holds: it cannot grow.";
    use.append(" ", over);
  }
  return tr;
}

function usageBadge(kind, text) {
  const span = document.createElement("span");
  span.className = "badge " + kind;
  span.textContent = text;
  return span;
}
