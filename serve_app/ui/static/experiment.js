/*
 * bandit-serve live page of one experiment (<body data-experiment>).
 *
 * Every few seconds it reads GET {base}/experiments/{name}/report (one request: status,
 * arms with weights, P(best) and posteriors, stopping rules, guardrails, drift, the
 * timeline, and the audit log when the token is the control token) and redraws. The
 * control buttons POST to the same API with the token; the API decides what it accepts.
 */
(function () {
  "use strict";

  const ui = window.BanditUI;
  const charts = ui.charts;
  const el = ui.el;
  const fmt = ui.fmt;
  const REFRESH_MS = 3000;
  const TIMELINE_POINTS = 400;
  const RATE_WINDOW_S = 600; // feedback rate for the time estimate: the last 10 minutes

  const name = document.body.dataset.experiment;
  const path = "/experiments/" + encodeURIComponent(name);
  const traffic = new charts.LineChart(document.getElementById("chart-traffic"), {
    yLabel: "share",
    range: [0, 1],
    percent: true,
  });
  const rewards = new charts.LineChart(document.getElementById("chart-reward"), {
    yLabel: "mean reward",
  });
  const buttons = Array.from(document.querySelectorAll("button[data-action]"));
  const armSelect = document.getElementById("promote-arm");
  const controlNote = document.getElementById("control-message");
  let busy = false;

  // ------------------------------------------------------------------ header and arms

  function renderStatus(report) {
    let label = report.status;
    if (report.status === "concluded") {
      label = "concluded: " + (report.outcome || "?") + (report.winner ? " (" + report.winner + ")" : "");
    }
    ui.setStatus(report.status, label);
  }

  function guardrailCell(arm, checks) {
    if (arm.excluded) return el("td", { class: "bad text" }, arm.exclusion_reason || "rolled back");
    const breached = checks.filter((c) => c.arm === arm.name && c.breached);
    if (breached.length) return el("td", { class: "bad text" }, breached.map((c) => c.rule).join(", "));
    const judged = checks.filter((c) => c.arm === arm.name).length;
    return el("td", { class: "text" }, judged ? "holding" : "\u2013");
  }

  function renderArms(report) {
    const arms = report.arms || [];
    const total = arms.reduce((sum, arm) => sum + (arm.requests || 0), 0);
    const intervals = arms.map((arm) => ui.credibleInterval(arm.posterior));
    const known = intervals.filter(Boolean);
    let domain = [0, 1];
    if (known.length) {
      const low = Math.min.apply(null, known.map((i) => i.low));
      const high = Math.max.apply(null, known.map((i) => i.high));
      const pad = 0.05 * (high - low || 1);
      domain = [low - pad, high + pad];
      if (report.reward === "binary") domain = [Math.max(0, domain[0]), Math.min(1, domain[1])];
    }
    const checks = report.guardrails || [];
    const rows = arms.map(function (arm, j) {
      const share = total > 0 ? (arm.requests || 0) / total : null;
      const interval = intervals[j];
      const intervalCell = el(
        "td",
        { class: "num", dataset: interval ? { low: interval.low, high: interval.high } : {} },
        interval ? "[" + interval.low.toFixed(3) + ", " + interval.high.toFixed(3) + "]" : "\u2013",
        interval ? charts.intervalMark(interval, domain, j) : null
      );
      return el(
        "tr",
        {
          class: arm.excluded ? "excluded" : null,
          dataset: { arm: arm.name, requests: arm.requests || 0, share: share === null ? "" : share },
        },
        el("td", null, el("span", { class: "swatch c" + (j % 10) }), arm.name),
        el("td", { class: "num" }, fmt.num(arm.requests)),
        el("td", { class: "num share" }, fmt.pct(share)),
        el("td", { class: "num weight" }, fmt.pct(arm.weight)),
        el("td", { class: "num" }, fmt.num(arm.feedback)),
        el("td", { class: "num" }, fmt.num(arm.reward_mean, 3)),
        intervalCell,
        el("td", { class: "num prob-best" }, fmt.pct(arm.prob_best)),
        guardrailCell(arm, checks)
      );
    });
    ui.replace(document.querySelector("#arms tbody"), rows);
    const chosen = armSelect.value;
    if (armSelect.options.length !== arms.length) {
      ui.replace(armSelect, arms.map((arm) => el("option", { value: arm.name }, arm.name)));
      if (chosen) armSelect.value = chosen;
    }
  }

  // ------------------------------------------------------------------ stopping rule

  /** The number ``pattern`` captures in a rule's detail text (the report's own wording). */
  function numberAfter(text, pattern) {
    const match = pattern.exec(text || "");
    return match ? Number(match[1]) : null;
  }

  /**
   * Progress to the stopping rule's minimum sample and an estimate of the time left to it:
   * for every arm still in the experiment, (needed - has) / its feedback rate over the
   * last RATE_WINDOW_S of the timeline; the largest of these (the slowest arm decides).
   */
  function progress(report, points) {
    const stopping = report.stopping;
    if (!stopping) return null;
    const rules = stopping.rules || [];
    const minimum = rules.find((r) => r.name === "min_samples");
    // A numeric ``target`` wins where the report has one; else the rule's own wording.
    let needed = minimum && ui.isNumber(minimum.target) ? minimum.target : null;
    if (needed === null && minimum) needed = numberAfter(minimum.detail, /of (\d+) needed/);
    const active = (report.arms || []).filter((arm) => !arm.excluded);
    const fewest = active.length ? Math.min.apply(null, active.map((arm) => arm.feedback || 0)) : 0;
    const slowest = active.find((arm) => (arm.feedback || 0) === fewest);
    const result = { stopping: stopping, needed: needed, fewest: fewest, slowest: slowest, seconds: null };
    if (needed === null || !points.length) return result;
    const last = points[points.length - 1];
    const first = points.find((p) => p.at >= last.at - RATE_WINDOW_S) || points[0];
    const elapsed = last.at - first.at;
    result.window = elapsed;
    if (elapsed <= 0) return result;
    let seconds = 0;
    for (const arm of active) {
      const missing = Math.max(0, needed - (arm.feedback || 0));
      if (!missing) continue;
      const rate = ((last.feedback[arm.name] || 0) - (first.feedback[arm.name] || 0)) / elapsed;
      seconds = rate > 0 ? Math.max(seconds, missing / rate) : Infinity;
      if (seconds === Infinity) break;
    }
    result.seconds = seconds;
    const limit = rules.find((r) => r.name === "max_duration");
    if (limit) {
      const most = numberAfter(limit.detail, /of at most (\d+(?:\.\d+)?) s/);
      const running = numberAfter(limit.detail, /running (\d+(?:\.\d+)?) s/);
      if (most !== null && running !== null) result.deadline = Math.max(0, most - running);
    }
    return result;
  }

  function renderStopping(report, points) {
    const node = document.getElementById("stopping");
    const state = progress(report, points);
    if (!state) {
      ui.replace(node, el("p", { class: "muted" }, "No stopping rule configured: the experiment runs until someone concludes it."));
      return;
    }
    const stopping = state.stopping;
    const facts = el("dl", { class: "facts" });
    const add = (term, ...value) => {
      facts.appendChild(el("dt", null, term));
      facts.appendChild(el("dd", null, ...value));
    };
    add("status", el("span", { class: stopping.met ? "good" : null }, stopping.met ? "met" : "not met"),
      stopping.winner ? " \u2013 winner " + stopping.winner : "");
    if (state.needed !== null) {
      add(
        "samples",
        el("progress", { id: "samples-progress", value: Math.min(state.fewest, state.needed), max: state.needed }),
        " " + fmt.num(state.fewest) + " of " + fmt.num(state.needed) + " samples (feedback) per arm" +
          (state.slowest ? ", fewest: " + state.slowest.name : "")
      );
    }
    if (report.status === "running" && state.needed !== null && state.fewest < state.needed) {
      let estimate;
      if (state.seconds === null) estimate = "not yet: the timeline needs two samples";
      else if (state.seconds === Infinity) estimate = "unknown: no feedback for an arm in the window";
      else estimate = "\u2248 " + (state.seconds / 86400).toFixed(state.seconds < 8640 ? 3 : 1) + " days (" + fmt.duration(state.seconds) + ")";
      add(
        "expected time left",
        el("span", { id: "days-left" }, estimate),
        el(
          "p",
          { class: "muted small" },
          "An estimate of the time until every arm still in the experiment has the rule's minimum feedback, " +
            "at each arm's feedback rate over the last " + fmt.duration(state.window || 0) +
            " of the timeline (the slowest arm decides; a bandit sends its worst arms little traffic). " +
            "The rule may need more data than that to decide."
        )
      );
    }
    if (ui.isNumber(state.deadline)) add("stops at the latest in", fmt.duration(state.deadline) + " (max_duration_s)");
    add("reason", stopping.reason || "\u2013");
    const rules = ui.table(
      ["rule", "met", "detail"],
      (stopping.rules || []).map((r) => [r.name, r.met ? "yes" : "no", el("td", { class: "text" }, r.detail || "")]),
      "no rules"
    );
    ui.replace(node, facts, rules);
  }

  // ------------------------------------------------------------------ charts

  function renderCharts(report, points) {
    const arms = charts.armNames(report);
    const data = charts.trafficData(points, arms);
    const series = [];
    const columns = [];
    arms.forEach(function (arm, j) {
      series.push({ label: arm + " share", color: charts.color(j), stepped: true });
      columns.push(data.shares[j]);
    });
    arms.forEach(function (arm, j) {
      series.push({ label: arm + " weight", color: charts.color(j), dash: true });
      columns.push(data.weights[j]);
    });
    traffic.update(data.x, series, columns);
    const means = charts.rewardData(points, arms);
    rewards.update(
      means.x,
      arms.map((arm, j) => ({ label: arm, color: charts.color(j) })),
      means.means
    );
  }

  // ------------------------------------------------------------------ guardrails, drift, audit

  function renderGuardrails(report) {
    const rows = (report.guardrails || []).map((g) => [
      g.arm,
      g.rule,
      fmt.num(g.value, 3),
      fmt.num(g.threshold, 3),
      el("td", { class: g.breached ? "bad" : "good" }, g.breached ? "breached" : "holding"),
      el("td", { class: "text" }, g.detail || ""),
    ]);
    ui.replace(
      document.getElementById("guardrails"),
      ui.table(["arm", "rule", "value", "threshold", "state", "detail"], rows, "No guardrails configured (or none judged yet).")
    );
  }

  function renderDrift(report) {
    const node = document.getElementById("drift");
    const drift = report.drift;
    if (!drift) {
      ui.replace(node, el("p", { class: "muted" }, "No drift tracking: add a 'drift' section to the experiment's config."));
      return;
    }
    const head = el("p", null, el("span", { class: drift.alert ? "bad" : "good" }, drift.alert ? "drift alert" : "no drift alert"));
    const reasons = (drift.reasons || []).length
      ? el("ul", { class: "reasons" }, drift.reasons.map((r) => el("li", null, r)))
      : null;
    const psi = (item) => (item.psi === "inf" ? Infinity : item.psi);
    const features = (drift.features || [])
      .filter((f) => f.psi !== null && f.psi !== undefined)
      .sort((a, b) => psi(b) - psi(a))
      .slice(0, 8)
      .map((f) => [f.name, f.kind || "\u2013", f.psi === "inf" ? "inf" : fmt.num(f.psi, 3), fmt.num(f.p_adjusted, 3),
        el("td", { class: f.drifted ? "bad" : null }, f.drifted ? "yes" : "no")]);
    ui.replace(
      node,
      head,
      reasons,
      ui.table(["feature (top 8 by PSI)", "kind", "PSI", "p adj.", "drifted"], features, "No feature statistics yet.")
    );
  }

  function renderAudit(report) {
    const node = document.getElementById("audit");
    if (!Array.isArray(report.audit)) {
      ui.replace(node, el("p", { class: "muted" }, "Enter the control token to see the audit trail."));
      return;
    }
    const rows = report.audit
      .slice()
      .reverse()
      .slice(0, 50)
      .map((entry) => [
        fmt.when(entry.at),
        el("td", { class: "text action" }, entry.action),
        el("td", { class: "text" }, entry.actor || "\u2013"),
        el("td", { class: "text" }, typeof entry.detail === "string" ? entry.detail : JSON.stringify(entry.detail)),
      ]);
    ui.replace(node, ui.table(["at", "action", "actor", "detail"], rows, "No audit entries."));
  }

  // ------------------------------------------------------------------ refresh and control

  function render(report) {
    const points = charts.samples(report, charts.armNames(report));
    renderStatus(report);
    renderArms(report);
    renderStopping(report, points);
    renderCharts(report, points);
    renderGuardrails(report);
    renderDrift(report);
    renderAudit(report);
  }

  async function refresh() {
    const report = await ui.api(path + "/report?timeline_points=" + TIMELINE_POINTS);
    render(report);
  }

  function updateControls() {
    const allowed = Boolean(ui.token.get()) && !busy;
    buttons.forEach((button) => (button.disabled = !allowed));
    armSelect.disabled = !allowed;
    if (!ui.token.get()) controlNote.textContent = "Enter the control token to use these.";
  }

  async function act(action) {
    const body = { reason: document.getElementById("reason").value.trim() };
    if (action === "promote") body.arm = armSelect.value;
    if (action === "promote" && !window.confirm("Promote " + body.arm + "? This concludes the experiment.")) return;
    if (action === "rollback" && !window.confirm("Roll back to the control arm? This concludes the experiment.")) return;
    busy = true;
    updateControls();
    controlNote.textContent = action + "\u2026";
    try {
      const summary = await ui.api(path + "/" + action, { method: "POST", body: body });
      renderStatus(summary);
      controlNote.textContent = action + " done: the experiment is " + summary.status + ".";
    } catch (error) {
      controlNote.textContent = action + " refused: " + (error.hint ? error.hint() : String(error));
    } finally {
      busy = false;
      updateControls();
      poller.now();
    }
  }

  buttons.forEach(function (button) {
    button.addEventListener("click", function () {
      act(button.dataset.action);
    });
  });

  const poller = ui.poll(refresh, {
    every: REFRESH_MS,
    onSuccess: function (delay) {
      ui.message("");
      ui.refreshNote("updated " + fmt.time(new Date()) + ", every " + delay / 1000 + " s");
    },
    onError: function (error, delay) {
      ui.message(error.hint ? error.hint() : String(error), true);
      ui.refreshNote("retrying in " + Math.round(delay / 1000) + " s");
      if (error.status === 404) ui.setStatus("error", "not found");
    },
  });
  ui.initTokenPanel(function () {
    updateControls();
    poller.now();
  });
  updateControls();
})();
