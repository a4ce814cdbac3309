"""The live page's HTML: a static shell per page, filled in by its scripts from the JSON API.

The server puts no experiment data into a page: only the app's base path (the ASGI
``root_path``, the Serve route prefix) and the experiment's name, HTML-escaped, in ``data-``
attributes of ``<body>`` and as text. Scripts and styles are files of
:mod:`serve_app.ui.assets` (no inline script or style), which the Content-Security-Policy
of :data:`SECURITY_HEADERS` enforces in the browser: ``script-src 'self'`` runs only this
app's files, ``connect-src 'self'`` lets them call only this app's API, and nothing may frame
the page, submit a form or leak the URL in a ``Referer``.

Example:
    >>> page = experiment_page('x"><script>', "/live", Assets.load())
    >>> '"><script>' in page, 'data-experiment="x&quot;&gt;&lt;script&gt;"' in page
    (False, True)
"""

from __future__ import annotations

import html
import re

from serve_app.config import NAME_PATTERN
from serve_app.ui.assets import Assets

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}
"""Headers of every HTML response (the shell is tiny and names the current asset hashes, so
it is never cached)."""

STYLES = ("vendor/uplot/uPlot.min.css", "ui.css")
SCRIPTS = {
    "index": ("common.js", "index.js"),
    "experiment": ("vendor/uplot/uPlot.iife.min.js", "common.js", "charts.js", "experiment.js"),
}
_NAME = re.compile(NAME_PATTERN)


def _e(value: str) -> str:
    return html.escape(value, quote=True)


def base_path(root_path: str) -> str:
    """The app's base path from the ASGI ``root_path``: ``""`` or ``/prefix`` (no slash at
    the end), so ``base + "/experiments"`` is this app's API behind any route prefix.

    Example:
        >>> base_path(""), base_path("/"), base_path("/live/"), base_path("/a/b")
        ('', '', '/live', '/a/b')
    """
    root = root_path.rstrip("/")
    return root if root.startswith("/") else ""


def is_experiment_name(name: str) -> bool:
    """Could ``name`` name an experiment (the config's name pattern)?

    >>> is_experiment_name("digits-ab"), is_experiment_name("<b>"), is_experiment_name("a/b")
    (True, False, False)
    """
    return _NAME.fullmatch(name) is not None


TOKEN_PANEL = """
<section class="panel token" id="token-panel" aria-label="API token">
  <label for="token-input">Token</label>
  <input id="token-input" type="password" autocomplete="off" spellcheck="false"
    placeholder="paste the control token (or the data token)">
  <button type="button" id="token-save">Use token</button>
  <button type="button" id="token-clear">Forget</button>
  <span id="token-state" class="muted"></span>
  <p class="muted small">The token stays in this tab (sessionStorage) and goes only to this
  app's API, as <code>Authorization: Bearer</code>. The control token enables the buttons and
  shows the audit trail.</p>
</section>
"""

INDEX_BODY = """
<main>
  <section>
    <h2>Experiments</h2>
    <p id="message" class="message" role="status"></p>
    <table id="experiments" class="data">
      <thead><tr><th>experiment</th><th>status</th><th>policy</th><th class="num">arms</th>
        <th class="num">decisions</th><th class="num">feedback</th><th>leading arm</th>
        <th class="num">P(best)</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
"""

EXPERIMENT_BODY = """
<main>
  <p id="message" class="message" role="status"></p>
  <section class="panel" id="controls" aria-label="Control">
    <h2>Control</h2>
    <div class="row">
      <input id="reason" type="text" maxlength="1000" autocomplete="off"
        placeholder="reason (kept in the audit log)">
      <button type="button" id="action-pause" data-action="pause">Pause</button>
      <button type="button" id="action-resume" data-action="resume">Resume</button>
      <label for="promote-arm">arm</label>
      <select id="promote-arm"></select>
      <button type="button" id="action-promote" data-action="promote">Promote</button>
      <button type="button" id="action-rollback" data-action="rollback"
        class="danger">Roll back</button>
    </div>
    <p id="control-message" class="muted" role="status">Enter the control token to use
    these.</p>
  </section>
  <section>
    <h2>Arms</h2>
    <table id="arms" class="data">
      <thead><tr><th>arm</th><th class="num">decisions</th><th class="num">traffic share</th>
        <th class="num">routing weight</th><th class="num">feedback</th>
        <th class="num">reward mean</th><th class="num">95% credible interval</th>
        <th class="num">P(best)</th><th>guardrail</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="muted small">Traffic share: the arm's part of all decisions so far. Reward
    interval: the central 95% of the posterior of the arm's mean reward (Beta for binary
    rewards, Normal for continuous ones), as the report computes it.</p>
  </section>
  <section>
    <h2>Stopping rule</h2>
    <div id="stopping"></div>
  </section>
  <section>
    <h2>Traffic share and routing weight over decisions</h2>
    <div id="chart-traffic" class="chart" data-points="0"></div>
    <p class="muted small">Solid: each arm's share of the decisions between two timeline
    samples. Dashed: its routing weight at each sample. x: decisions routed so far.</p>
  </section>
  <section>
    <h2>Mean reward over decisions</h2>
    <div id="chart-reward" class="chart" data-points="0"></div>
    <p class="muted small">Each arm's mean reward of the feedback received so far.</p>
  </section>
  <section>
    <h2>Guardrails</h2>
    <div id="guardrails"></div>
  </section>
  <section>
    <h2>Drift</h2>
    <div id="drift"></div>
  </section>
  <section>
    <h2>Audit trail</h2>
    <div id="audit"></div>
  </section>
</main>
"""


def _page(
    assets: Assets, base: str, page: str, title: str, heading: str, body: str, **data: str
) -> str:
    """The document around ``body``; ``data`` become ``data-*`` attributes of ``<body>``."""
    styles = "".join(
        f'<link rel="stylesheet" href="{_e(assets.url(base, name))}">' for name in STYLES
    )
    scripts = "".join(
        f'<script defer src="{_e(assets.url(base, name))}"></script>' for name in SCRIPTS[page]
    )
    attributes = "".join(f' data-{key}="{_e(value)}"' for key, value in data.items())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>{styles}{scripts}</head>\n"
        f'<body data-page="{_e(page)}" data-base="{_e(base)}"{attributes}>\n'
        '<header class="top">'
        f'<a class="brand" href="{_e(base)}/ui">bandit-serve</a>'
        f"<h1>{heading}</h1>"
        '<span id="status" class="badge" data-status="">loading</span>'
        '<span id="refresh" class="muted small" aria-live="polite"></span>'
        "</header>\n"
        f"{TOKEN_PANEL}{body}"
        '<noscript><p class="message">This page needs JavaScript; the same data is at '
        f"{_e(base)}/experiments (JSON).</p></noscript>\n</body></html>\n"
    )


def index_page(base: str, assets: Assets) -> str:
    """``GET /ui``: every experiment with its status, refreshed from ``GET /experiments``."""
    return _page(assets, base, "index", "bandit-serve: experiments", "Experiments", INDEX_BODY)


def experiment_page(name: str, base: str, assets: Assets) -> str:
    """``GET /ui/experiments/{name}``: one experiment, refreshed from its report."""
    heading = f'Experiment <span id="experiment-name">{_e(name)}</span>'
    return _page(
        assets,
        base,
        "experiment",
        f"bandit-serve: {name}",
        heading,
        EXPERIMENT_BODY,
        experiment=name,
    )


def not_found_page(base: str, message: str) -> str:
    """A page for a name that cannot be an experiment (no scripts, nothing but text)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>bandit-serve: not found</title></head>\n"
        f'<body><h1>Not found</h1><p>{_e(message)}</p><p><a href="{_e(base)}/ui">'
        "All experiments</a></p></body></html>\n"
    )
