// The tenant page: its workloads' live values and decisions from /ws/tenants/<slug>/, the
// fleet stream narrowed to this tenant and its teams (as far as the user may see them).
"use strict";

(function () {
  const page = document.getElementById("tenant-page");

  function onFrame(frame) {
    if (frame.type === "snapshot" || frame.type === "delta") {
      updateWorkloadRows(frame.workloads);
      updateUsage(frame.usage);
      if (frame.type === "snapshot") (frame.decisions || []).forEach((d) => addDecision("decisions", d));
      page.dataset.frames = String(Number(page.dataset.frames || 0) + 1);
      page.dataset.lastFrame = frame.t;
    } else if (frame.type === "decision") {
      addDecision("decisions", frame.decision);
    }
  }

  openLiveStream(page.dataset.stream, onFrame);
})();
