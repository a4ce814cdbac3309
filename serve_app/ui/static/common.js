/*
 * bandit-serve live page: what every page shares (window.BanditUI).
 *
 * - api(): calls this app's JSON API under the page's base path (the Serve route prefix the
 *   server put in <body data-base>), with "Authorization: Bearer <token>" when the user
 *   entered a token. The token lives in sessionStorage only (this tab), never in a URL.
 * - poll(): refreshes on a timer without ever overlapping two requests, doubles the wait
 *   after each failure (up to a minute) and sleeps while the tab is hidden.
 * - el(): builds DOM nodes; text always goes in as textContent, never as markup.
 * - betaQuantile(), credibleInterval(): the posterior intervals the arms table shows.
 */
(function () {
  "use strict";

  const TOKEN_KEY = "bandit-serve.token";
  const body = document.body;
  const base = body.dataset.base || "";

  // ------------------------------------------------------------------ token

  const token = {
    get() {
      try {
        return window.sessionStorage.getItem(TOKEN_KEY) || "";
      } catch (error) {
        return "";
      }
    },
    set(value) {
      try {
        window.sessionStorage.setItem(TOKEN_KEY, value);
      } catch (error) {
        /* storage disabled: the token is then not kept */
      }
    },
    clear() {
      try {
        window.sessionStorage.removeItem(TOKEN_KEY);
      } catch (error) {
        /* nothing kept */
      }
    },
  };

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, payload) {
      const detail = payload && payload.message ? payload.message : "HTTP " + status;
      super(detail);
      this.status = status;
      this.payload = payload;
    }

    /** What the user can do about it. */
    hint() {
      if (this.status === 401) {
        return "This app protects its data: paste a token above. (" + this.message + ")";
      }
      if (this.status === 403) {
        return "The token was refused: " + this.message;
      }
      if (this.status === 0) {
        return "The app does not answer (" + this.message + "); retrying.";
      }
      return this.message;
    }
  }

  /** Call ``base + path``; resolves to the parsed JSON body, rejects with an ApiError. */
  async function api(path, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    const bearer = token.get();
    if (bearer) {
      headers.Authorization = "Bearer " + bearer;
    }
    const init = {
      method: opts.method || "GET",
      headers: headers,
      cache: "no-store",
      credentials: "same-origin",
      redirect: "error",
    };
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.body);
    }
    let response;
    try {
      response = await fetch(base + path, init);
    } catch (error) {
      throw new ApiError(0, { message: String(error && error.message ? error.message : error) });
    }
    const text = await response.text();
    let payload = null;
    try {
      payload = text ? JSON.parse(text) : null;
    } catch (error) {
      payload = { message: text.slice(0, 200) };
    }
    if (!response.ok) {
      throw new ApiError(response.status, payload);
    }
    return payload;
  }

  /**
   * Run ``task`` now and then every ``every`` ms after it settles; after a failure wait
   * twice as long as before (at most ``max`` ms). Hidden tabs do not poll.
   */
  function poll(task, options) {
    const every = options.every;
    const max = options.max || 60000;
    let delay = every;
    let timer = null;
    let running = false;
    let again = false;

    async function tick() {
      timer = null;
      if (document.hidden) {
        return; // visibilitychange starts it again
      }
      running = true;
      try {
        await task();
        delay = every;
        if (options.onSuccess) options.onSuccess(delay);
      } catch (error) {
        delay = Math.min(max, delay * 2);
        if (options.onError) options.onError(error, delay);
      }
      running = false;
      const wait = again ? 0 : delay;
      again = false;
      schedule(wait);
    }

    function schedule(ms) {
      if (timer === null && !running) {
        timer = window.setTimeout(tick, ms);
      }
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) schedule(0);
    });
    schedule(0);
    return {
      /** Refresh as soon as the request in flight (if any) is done. */
      now() {
        if (timer !== null) {
          window.clearTimeout(timer);
          timer = null;
        }
        if (running) again = true;
        else schedule(0);
      },
    };
  }

  // ------------------------------------------------------------------ DOM

  /** ``el("td", {class: "x", dataset: {arm: a}}, "text", node)``: children are text or nodes. */
  function el(tag, props) {
    const node = document.createElement(tag);
    const attributes = props || {};
    for (const key of Object.keys(attributes)) {
      const value = attributes[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") {
        for (const name of Object.keys(value)) node.dataset[name] = String(value[name]);
      } else {
        node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      append(node, arguments[i]);
    }
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) {
      child.forEach(function (item) {
        append(node, item);
      });
    } else if (child instanceof Node) {
      node.appendChild(child);
    } else {
      node.appendChild(document.createTextNode(String(child)));
    }
  }

  function replace(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    for (let i = 1; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  const NUMERIC = /^[-+\u2212]?[\d.,]+(e[-+]?\d+)?%?$/i;

  /** A <td>: text that reads as a number is right-aligned (class "num"). */
  function cell(value) {
    if (value instanceof Node && value.tagName === "TD") return value;
    const numeric = typeof value === "string" && NUMERIC.test(value);
    return el("td", { class: numeric ? "num" : null }, value);
  }

  /** A table of ``rows`` (arrays of cells: text, a node, or a <td> already built). */
  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "muted" }, empty);
    const head = el("tr", null, headers.map((h) => el("th", null, h)));
    const lines = rows.map((cells) => el("tr", null, cells.map(cell)));
    return el("table", { class: "data" }, el("thead", null, head), el("tbody", null, lines));
  }

  function message(text, isError) {
    const node = document.getElementById("message");
    if (!node) return;
    node.textContent = text || "";
    node.classList.toggle("error", Boolean(isError));
  }

  function setStatus(status, label) {
    const node = document.getElementById("status");
    node.dataset.status = status;
    node.textContent = label || status;
  }

  function refreshNote(text) {
    const node = document.getElementById("refresh");
    if (node) node.textContent = text;
  }

  /** Wire the token field; ``onChange`` runs after the token is set or forgotten. */
  function initTokenPanel(onChange) {
    const input = document.getElementById("token-input");
    const state = document.getElementById("token-state");
    function show() {
      state.textContent = token.get() ? "token set for this tab" : "no token";
    }
    function save() {
      const value = input.value.trim();
      input.value = "";
      if (!value) return;
      token.set(value);
      show();
      onChange();
    }
    document.getElementById("token-save").addEventListener("click", save);
    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter") save();
    });
    document.getElementById("token-clear").addEventListener("click", function () {
      token.clear();
      show();
      onChange();
    });
    show();
  }

  // ------------------------------------------------------------------ formatting

  const DASH = "\u2013";

  function isNumber(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  const fmt = {
    num(value, digits) {
      if (!isNumber(value)) return DASH;
      if (Number.isInteger(value) || Math.abs(value) >= 1000) {
        return Math.round(value).toLocaleString("en-US");
      }
      return String(Number(value.toPrecision(digits || 3)));
    },
    pct(value, digits) {
      if (!isNumber(value)) return DASH;
      return (100 * value).toFixed(digits === undefined ? 1 : digits) + "%";
    },
    duration(seconds) {
      if (!isNumber(seconds)) return DASH;
      const s = Math.max(0, Math.round(seconds));
      const d = Math.floor(s / 86400);
      const h = Math.floor((s % 86400) / 3600);
      const m = Math.floor((s % 3600) / 60);
      const pad = (n) => String(n).padStart(2, "0");
      if (d) return d + "d " + h + "h";
      if (h) return h + "h " + pad(m) + "m";
      if (m) return m + "m " + pad(s % 60) + "s";
      return s + "s";
    },
    when(unix) {
      if (!isNumber(unix)) return DASH;
      return new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    },
    time(date) {
      return date.toTimeString().slice(0, 8);
    },
  };

  // ------------------------------------------------------------------ posterior intervals

  // Lanczos approximation (g = 7, n = 9) of ln Gamma(x), about 15 significant digits.
  const LANCZOS = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
    -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
    1.5056327351493116e-7,
  ];

  function lnGamma(x) {
    if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - lnGamma(1 - x);
    const z = x - 1;
    let sum = LANCZOS[0];
    for (let i = 1; i < 9; i++) sum += LANCZOS[i] / (z + i);
    const t = z + 7.5;
    return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(sum);
  }

  // Continued fraction of the incomplete beta function (modified Lentz).
  function betaFraction(x, a, b) {
    const tiny = 1e-300;
    const qab = a + b;
    const qap = a + 1;
    const qam = a - 1;
    let c = 1;
    let d = 1 - (qab * x) / qap;
    if (Math.abs(d) < tiny) d = tiny;
    d = 1 / d;
    let h = d;
    for (let m = 1; m <= 10000; m++) {
      const m2 = 2 * m;
      let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
      d = 1 + aa * d;
      if (Math.abs(d) < tiny) d = tiny;
      c = 1 + aa / c;
      if (Math.abs(c) < tiny) c = tiny;
      d = 1 / d;
      h *= d * c;
      aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
      d = 1 + aa * d;
      if (Math.abs(d) < tiny) d = tiny;
      c = 1 + aa / c;
      if (Math.abs(c) < tiny) c = tiny;
      d = 1 / d;
      const step = d * c;
      h *= step;
      if (Math.abs(step - 1) < 1e-14) break;
    }
    return h;
  }

  /** P(X <= x) for X ~ Beta(a, b): the regularized incomplete beta function I_x(a, b). */
  function betaCdf(x, a, b) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    const front = Math.exp(
      lnGamma(a + b) - lnGamma(a) - lnGamma(b) + a * Math.log(x) + b * Math.log(1 - x)
    );
    if (x < (a + 1) / (a + b + 2)) return (front * betaFraction(x, a, b)) / a;
    return 1 - (front * betaFraction(1 - x, b, a)) / b;
  }

  /** The ``p`` quantile of Beta(a, b), by bisection on the CDF (to about 1e-12). */
  function betaQuantile(p, a, b) {
    let low = 0;
    let high = 1;
    for (let i = 0; i < 45; i++) {
      const mid = (low + high) / 2;
      if (betaCdf(mid, a, b) < p) low = mid;
      else high = mid;
    }
    return (low + high) / 2;
  }

  const Z975 = 1.959963984540054; // the 97.5% quantile of the standard normal

  /**
   * The central 95% credible interval of a report posterior: ``{low, mean, high}`` for
   * ``{family: "beta", alpha, beta}`` (exact quantiles) or ``{family: "normal", mean, sd}``
   * (mean +- 1.96 sd); null when the posterior is missing or degenerate.
   */
  function credibleInterval(posterior) {
    if (!posterior) return null;
    if (posterior.family === "beta") {
      const a = posterior.alpha;
      const b = posterior.beta;
      if (!isNumber(a) || !isNumber(b) || a <= 0 || b <= 0) return null;
      return { low: betaQuantile(0.025, a, b), mean: a / (a + b), high: betaQuantile(0.975, a, b) };
    }
    if (posterior.family === "normal") {
      const mean = posterior.mean;
      const sd = posterior.sd;
      if (!isNumber(mean) || !isNumber(sd) || sd < 0) return null;
      return { low: mean - Z975 * sd, mean: mean, high: mean + Z975 * sd };
    }
    return null;
  }

  window.BanditUI = {
    base: base,
    token: token,
    api: api,
    ApiError: ApiError,
    poll: poll,
    el: el,
    replace: replace,
    table: table,
    cell: cell,
    message: message,
    setStatus: setStatus,
    refreshNote: refreshNote,
    initTokenPanel: initTokenPanel,
    fmt: fmt,
    isNumber: isNumber,
    betaCdf: betaCdf,
    betaQuantile: betaQuantile,
    credibleInterval: credibleInterval,
  };
})();
