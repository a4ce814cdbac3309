/*
 * bandit-serve live page: the report timeline as series against decisions, and the charts
 * (uPlot, vendored in vendor/uplot/; see its NOTICE) and interval marks that show them.
 *
 * The report's timeline holds one row per arm and sample: cumulative "pulls", "feedback",
 * "reward_sum", the routing "weight" and the experiment's cumulative "decisions", sampled
 * every few decisions. The x axis of every chart is decisions, so a short run shows its
 * learning curve whatever its request rate.
 */
(function () {
  "use strict";

  const ui = window.BanditUI;
  const COLORS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
  ];
  const SVG = "http://www.w3.org/2000/svg";

  function color(index) {
    return COLORS[index % COLORS.length];
  }

  /** Arm names in report order, then any seen only in the timeline. */
  function armNames(report) {
    const names = (report.arms || []).map((arm) => arm.name);
    for (const row of report.timeline || []) {
      if (!names.includes(row.arm)) names.push(row.arm);
    }
    return names;
  }

  /**
   * One sample per distinct time, ascending, each with per-arm cumulative values (an arm
   * missing from a sample keeps its previous values) and ``decisions`` (the rows' own, else
   * the sum of pulls; never decreasing). Samples with the decisions of the one before are
   * merged into it (the later values win), so decisions strictly increase.
   */
  function samples(report, arms) {
    const byTime = new Map();
    for (const row of report.timeline || []) {
      if (!ui.isNumber(row.at)) continue;
      let sample = byTime.get(row.at);
      if (!sample) {
        sample = { at: row.at, decisions: null, rows: {} };
        byTime.set(row.at, sample);
      }
      if (ui.isNumber(row.decisions)) {
        sample.decisions = Math.max(sample.decisions || 0, row.decisions);
      }
      sample.rows[row.arm] = row;
    }
    const ordered = Array.from(byTime.values()).sort((a, b) => a.at - b.at);
    const last = {};
    const out = [];
    let highest = -1;
    for (const sample of ordered) {
      const point = { at: sample.at, pulls: {}, feedback: {}, reward: {}, weight: {} };
      let total = 0;
      for (const arm of arms) {
        if (sample.rows[arm]) last[arm] = sample.rows[arm];
        const row = last[arm] || {};
        point.pulls[arm] = ui.isNumber(row.pulls) ? row.pulls : 0;
        point.feedback[arm] = ui.isNumber(row.feedback) ? row.feedback : 0;
        point.reward[arm] = ui.isNumber(row.reward_sum) ? row.reward_sum : 0;
        point.weight[arm] = ui.isNumber(row.weight) ? row.weight : null;
        total += point.pulls[arm];
      }
      point.decisions = Math.max(highest, sample.decisions === null ? total : sample.decisions);
      if (out.length && point.decisions === highest) out[out.length - 1] = point;
      else out.push(point);
      highest = point.decisions;
    }
    return out;
  }

  /**
   * uPlot data for traffic share and routing weight: x = decisions; per arm the share of
   * the decisions since the previous sample (null for the first sample) and the weight.
   */
  function trafficData(points, arms) {
    const x = points.map((p) => p.decisions);
    const shares = arms.map(() => []);
    const weights = arms.map(() => []);
    points.forEach(function (point, i) {
      const previous = i > 0 ? points[i - 1] : null;
      const deltas = arms.map((arm) => (previous ? Math.max(0, point.pulls[arm] - previous.pulls[arm]) : 0));
      const total = deltas.reduce((a, b) => a + b, 0);
      arms.forEach(function (arm, j) {
        shares[j].push(previous && total > 0 ? deltas[j] / total : null);
        weights[j].push(point.weight[arm]);
      });
    });
    return { x: x, shares: shares, weights: weights };
  }

  /** uPlot data for each arm's mean reward so far (null before its first feedback). */
  function rewardData(points, arms) {
    return {
      x: points.map((p) => p.decisions),
      means: arms.map((arm) => points.map((p) => (p.feedback[arm] > 0 ? p.reward[arm] / p.feedback[arm] : null))),
    };
  }

  /** A uPlot line chart in ``container`` that keeps its instance across refreshes. */
  class LineChart {
    constructor(container, options) {
      this.container = container;
      this.options = options;
      this.plot = null;
      this.key = "";
      const chart = this;
      if (window.ResizeObserver) {
        new ResizeObserver(function () {
          if (chart.plot) chart.plot.setSize(chart.size());
        }).observe(container);
      }
    }

    size() {
      return { width: Math.max(300, this.container.clientWidth - 16), height: 300 };
    }

    /** ``series``: [{label, color, dash, stepped}], ``columns``: one array per series. */
    update(x, series, columns) {
      this.container.dataset.points = String(x.length);
      if (typeof window.uPlot !== "function") {
        ui.replace(this.container, ui.el("p", { class: "empty" }, "chart library not loaded"));
        return;
      }
      if (x.length < 2) {
        if (this.plot) this.plot.destroy();
        this.plot = null;
        this.key = "";
        ui.replace(this.container, ui.el("p", { class: "empty" }, "waiting for traffic: no samples yet"));
        return;
      }
      const data = [x].concat(columns);
      const key = series.map((s) => s.label).join("\u0000");
      if (this.plot && key === this.key) {
        this.plot.setData(data);
        return;
      }
      if (this.plot) this.plot.destroy();
      ui.replace(this.container);
      this.key = key;
      const percent = this.options.percent;
      const tick = percent
        ? (u, values) => values.map((v) => (v === null ? "" : Math.round(100 * v) + "%"))
        : (u, values) => values.map((v) => (v === null ? "" : String(Number(v.toPrecision(3)))));
      const stepped = window.uPlot.paths && window.uPlot.paths.stepped
        ? window.uPlot.paths.stepped({ align: -1 })
        : undefined;
      const opts = Object.assign(this.size(), {
        scales: {
          x: { time: false },
          y: this.options.range ? { range: this.options.range } : { auto: true },
        },
        axes: [
          { label: "decisions routed", values: (u, values) => values.map((v) => v.toLocaleString("en-US")) },
          { label: this.options.yLabel, values: tick, size: 56 },
        ],
        cursor: { drag: { x: false, y: false } },
        series: [{ label: "decisions", value: (u, v) => (v === null ? "\u2013" : v.toLocaleString("en-US")) }].concat(
          series.map(function (s) {
            return {
              label: s.label,
              stroke: s.color,
              width: s.dash ? 1.5 : 2,
              dash: s.dash ? [6, 4] : undefined,
              paths: s.stepped ? stepped : undefined,
              points: { show: false },
              spanGaps: !s.stepped,
              value: (u, v) => (v === null ? "\u2013" : percent ? ui.fmt.pct(v) : ui.fmt.num(v, 3)),
            };
          })
        ),
      });
      this.plot = new window.uPlot(opts, data, this.container);
    }
  }

  /** A small SVG mark: a line from ``low`` to ``high`` and a dot at ``mean`` on ``domain``. */
  function intervalMark(interval, domain, index) {
    const width = 150;
    const height = 14;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "interval");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "95% credible interval");
    const span = domain[1] - domain[0] || 1;
    const at = (v) => (4 + ((width - 8) * (Math.min(domain[1], Math.max(domain[0], v)) - domain[0])) / span).toFixed(1);
    const axis = document.createElementNS(SVG, "line");
    axis.setAttribute("x1", "4");
    axis.setAttribute("x2", String(width - 4));
    axis.setAttribute("y1", "7");
    axis.setAttribute("y2", "7");
    axis.setAttribute("stroke", "#d0d7de");
    const bar = document.createElementNS(SVG, "line");
    bar.setAttribute("x1", at(interval.low));
    bar.setAttribute("x2", at(interval.high));
    bar.setAttribute("y1", "7");
    bar.setAttribute("y2", "7");
    bar.setAttribute("stroke", color(index));
    bar.setAttribute("stroke-width", "4");
    bar.setAttribute("stroke-linecap", "round");
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", at(interval.mean));
    dot.setAttribute("cy", "7");
    dot.setAttribute("r", "3.5");
    dot.setAttribute("fill", "#1f2328");
    svg.appendChild(axis);
    svg.appendChild(bar);
    svg.appendChild(dot);
    return svg;
  }

  ui.charts = {
    color: color,
    armNames: armNames,
    samples: samples,
    trafficData: trafficData,
    rewardData: rewardData,
    LineChart: LineChart,
    intervalMark: intervalMark,
  };
})();
