/*
 * bandit-serve live page: the list of experiments, from GET {base}/experiments every few
 * seconds, each linking to its own page.
 */
(function () {
  "use strict";

  const ui = window.BanditUI;
  const el = ui.el;
  const fmt = ui.fmt;
  const REFRESH_MS = 5000;

  function leader(arms) {
    let best = null;
    for (const arm of arms) {
      const score = ui.isNumber(arm.prob_best) ? arm.prob_best : -1;
      if (best === null || score > best.score) best = { arm: arm, score: score };
    }
    return best && best.score >= 0 ? best.arm : null;
  }

  function render(experiments) {
    const rows = experiments.map(function (experiment) {
      const arms = experiment.arms || [];
      const top = leader(arms);
      const href = ui.base + "/ui/experiments/" + encodeURIComponent(experiment.name);
      return el(
        "tr",
        { dataset: { experiment: experiment.name } },
        el("td", null, el("a", { href: href }, experiment.name)),
        el("td", null, el("span", { class: "badge", dataset: { status: experiment.status } }, experiment.status)),
        el("td", null, experiment.policy),
        el("td", { class: "num" }, String(arms.length)),
        el("td", { class: "num" }, fmt.num(arms.reduce((sum, arm) => sum + (arm.requests || 0), 0))),
        el("td", { class: "num" }, fmt.num(arms.reduce((sum, arm) => sum + (arm.feedback || 0), 0))),
        el("td", null, top ? top.name : "\u2013"),
        el("td", { class: "num" }, top ? fmt.pct(top.prob_best) : "\u2013")
      );
    });
    ui.replace(document.querySelector("#experiments tbody"), rows);
    const running = experiments.filter((e) => e.status === "running").length;
    const noun = experiments.length === 1 ? " experiment, " : " experiments, ";
    ui.setStatus("list", experiments.length + noun + running + " running");
  }

  const poller = ui.poll(
    async function () {
      const answer = await ui.api("/experiments");
      render(answer.experiments || []);
    },
    {
      every: REFRESH_MS,
      onSuccess: function (delay) {
        ui.message("");
        ui.refreshNote("updated " + fmt.time(new Date()) + ", every " + delay / 1000 + " s");
      },
      onError: function (error, delay) {
        ui.message(error.hint ? error.hint() : String(error), true);
        ui.refreshNote("retrying in " + Math.round(delay / 1000) + " s");
      },
    }
  );
  ui.initTokenPanel(function () {
    poller.now();
  });
})();
