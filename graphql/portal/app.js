// Tongban portal: sign-in, citizen, checkpoint, official and auditor pages.
// Hand-written, no build step. Every page uses only the public GraphQL API:
// POST /graphql for queries and mutations, graphql-transport-ws on /graphql
// for subscriptions.
"use strict";
(function () {
  const TEXT = window.TONGBAN_TEXT || {};
  const TOKEN_KEY = "tongban.token";
  let lang = localStorage.getItem("tongban.lang") ||
    ((navigator.language || "").toLowerCase().startsWith("zh") ? "zh" : "en");

  // ---------------------------------------------------------------- text
  function t(key, vars) {
    const pair = TEXT[key];
    let s = pair ? pair[lang === "zh" ? 0 : 1] : key;
    if (vars) for (const k of Object.keys(vars)) s = s.split("{" + k + "}").join(String(vars[k]));
    return s;
  }
  function colourName(c) { return c ? t("colour." + c) : t("colour.none"); }
  function levelName(l) { return t("level." + l); }
  function roleName(r) { return TEXT["role." + r] ? t("role." + r) : r; }
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
  }

  // ----------------------------------------------------------------- DOM
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (v === true) e.setAttribute(k, "");
        else e.setAttribute(k, v);
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); return e; }
  function loading() { return h("p", { class: "loading", role: "status" }, t("loading")); }
  function pill(kind, text) { return h("span", { class: "pill " + kind }, text); }
  function field(id, label, input) { input.id = id; return h("div", null, h("label", { for: id }, label), input); }
  function card(title, ...body) { return h("section", { class: "card" }, title ? h("h2", null, title) : null, ...body); }

  // ---------------------------------------------------------------- auth
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let me = null; // whoami
  function claims(tok) {
    try {
      const part = tok.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(decodeURIComponent(escape(atob(part))));
    } catch (_) { return null; }
  }
  function expired() {
    const c = claims(token);
    return !!(c && c.exp && c.exp * 1000 < Date.now());
  }

  const banner = document.getElementById("banner");
  function showAuthProblem(message) {
    clear(banner);
    banner.hidden = false;
    banner.append(h("span", null, message),
      h("button", { type: "button", class: "danger", id: "signin-again", onclick: () => {
        if (!token) { hideBanner(); const f = document.getElementById("token"); if (f) { f.focus(); return; } }
        signOut();
      } }, t("err.signin_again")));
  }
  function hideBanner() { banner.hidden = true; clear(banner); }
  function signOut() {
    token = ""; me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    live.close();
    hideBanner();
    if (location.hash === "#/signin") render(); else location.hash = "#/signin";
  }

  // ----------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(code, message, extensions) { super(message); this.code = code; this.extensions = extensions || {}; }
  }
  async function gql(query, variables) {
    if (token && expired()) {
      showAuthProblem(t("err.expired"));
      throw new ApiError("UNAUTHENTICATED", t("err.expired"));
    }
    let res;
    try {
      res = await fetch("/graphql", {
        method: "POST",
        headers: Object.assign({ "content-type": "application/json" }, token ? { authorization: "Bearer " + token } : {}),
        body: JSON.stringify({ query, variables: variables || {} }),
      });
    } catch (_) {
      throw new ApiError("NETWORK", t("err.network"));
    }
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    const first = body && body.errors && body.errors[0];
    if (res.status === 401) {
      const msg = first ? first.message : "HTTP 401";
      showAuthProblem(/expired/i.test(msg) ? t("err.expired") : t("err.unauth", { msg }));
      throw new ApiError("UNAUTHENTICATED", msg);
    }
    if (!body) throw new ApiError("NETWORK", t("err.network"));
    if (first) {
      const code = (first.extensions && first.extensions.code) || "INTERNAL";
      if (code === "UNAUTHENTICATED") showAuthProblem(t("err.unauth", { msg: first.message }));
      throw new ApiError(code, first.message, first.extensions);
    }
    return body.data;
  }
  function explainError(e) {
    const msg = e && e.message ? e.message : String(e);
    switch (e && e.code) {
      case "NETWORK": return t("err.network");
      case "UNAUTHENTICATED": return /expired/i.test(msg) ? t("err.expired") : t("err.unauth", { msg });
      case "FORBIDDEN": return t("err.forbidden", { msg });
      case "INVALID_INPUT": case "GRAPHQL_VALIDATION_FAILED": return t("err.invalid", { msg });
      case "NOT_FOUND": return t("err.notfound", { msg });
      case "RATE_LIMITED": return t("err.rate");
      default: return t("err.other", { msg });
    }
  }
  function errorBox(e, retry) {
    return h("div", { class: "error", role: "alert" }, h("span", null, explainError(e) + " "),
      retry ? h("button", { type: "button", class: "secondary", onclick: retry }, t("retry")) : null);
  }
  // Runs `fn` for a form's submit with a busy button and a status line.
  function submitting(form, status, fn) {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector("button[type=submit]");
      if (button) button.disabled = true;
      clear(status).append(h("span", { class: "loading" }, t("saving")));
      try {
        const msg = await fn();
        clear(status);
        if (msg) status.append(h("div", { class: "ok", role: "status" }, msg));
      } catch (e) {
        clear(status).append(errorBox(e));
      } finally {
        if (button) button.disabled = false;
      }
    });
  }

  // --------------------------------------------- subscriptions (graphql-transport-ws)
  const liveEl = document.getElementById("live");
  function setLive(on) {
    liveEl.className = "live " + (on ? "on" : "off");
    liveEl.textContent = on ? t("live.on") : t("live.off");
    liveEl.dataset.state = on ? "on" : "off";
  }
  const live = {
    ws: null, acked: false, subs: new Map(), next: 1, backoff: 500, timer: null,
    subscribe(query, variables, onData, onError) {
      const id = String(this.next++);
      const sub = { id, query, variables: Object.assign({}, variables), onData, onError };
      this.subs.set(id, sub);
      this.ensure();
      if (this.acked) this.start(sub);
      return () => {
        this.subs.delete(id);
        if (this.acked && this.ws) this.ws.send(JSON.stringify({ id, type: "complete" }));
        if (!this.subs.size) this.close();
      };
    },
    start(sub) {
      this.ws.send(JSON.stringify({ id: sub.id, type: "subscribe", payload: { query: sub.query, variables: sub.variables } }));
    },
    ensure() {
      if (this.ws || !token) return;
      const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/graphql";
      const ws = new WebSocket(url, "graphql-transport-ws");
      this.ws = ws;
      ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: "Bearer " + token } }));
      ws.onmessage = (m) => {
        let msg;
        try { msg = JSON.parse(m.data); } catch (_) { return; }
        const sub = msg.id ? this.subs.get(msg.id) : null;
        switch (msg.type) {
          case "connection_ack":
            this.acked = true; this.backoff = 500; setLive(true);
            for (const s of this.subs.values()) this.start(s);
            break;
          case "ping": ws.send(JSON.stringify({ type: "pong" })); break;
          case "next":
            if (!sub) break;
            if (msg.payload && msg.payload.errors && msg.payload.errors.length) {
              if (sub.onError) sub.onError(new ApiError((msg.payload.errors[0].extensions || {}).code, msg.payload.errors[0].message));
              break;
            }
            if (msg.payload && msg.payload.data) {
              const item = Object.values(msg.payload.data)[0];
              if (item && item.cursor) sub.variables.after = item.cursor; // resume here after a reconnect
              sub.onData(item);
            }
            break;
          case "error":
            if (sub && sub.onError) {
              const first = (msg.payload && msg.payload[0]) || {};
              sub.onError(new ApiError((first.extensions || {}).code, first.message || "subscription error"));
            }
            break;
          default: break;
        }
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null; this.acked = false;
        if (ev.code === 4403 || ev.code === 4401 || ev.code === 4400) {
          liveEl.textContent = ""; liveEl.className = "live";
          showAuthProblem(/expired/i.test(ev.reason || "") ? t("err.expired") : t("err.unauth", { msg: ev.reason || ev.code }));
          return;
        }
        if (this.subs.size && token) {
          setLive(false);
          this.timer = setTimeout(() => this.ensure(), this.backoff);
          this.backoff = Math.min(this.backoff * 2, 15000);
        }
      };
    },
    close() {
      clearTimeout(this.timer);
      this.subs.clear();
      const ws = this.ws;
      this.ws = null; this.acked = false;
      if (ws) ws.close(1000, "page left");
      liveEl.textContent = ""; liveEl.className = "live"; delete liveEl.dataset.state;
    },
  };

  // --------------------------------------------------------- place names
  const names = new Map();
  function placeName(code) {
    const span = h("span", { class: "place", title: code }, code);
    if (!code || !/^\d{2,12}$/.test(code)) return span;
    let p = names.get(code);
    if (!p) { p = gql("query($c: String!) { divisionName(code: $c) }", { c: code }).then((d) => d.divisionName).catch(() => null); names.set(code, p); }
    p.then((n) => { if (n) span.textContent = n + " (" + code + ")"; });
    return span;
  }

  // ---------------------------------------------------- explanations
  function describeEvidence(ev) {
    const e = ev.evidence || {};
    const vars = Object.assign({}, e);
    // Dates arrive as [year, day of the year].
    for (const [k, v] of Object.entries(vars)) {
      if (Array.isArray(v) && v.length === 2 && v.every(Number.isInteger) && v[1] >= 1 && v[1] <= 366) {
        vars[k] = new Date(Date.UTC(v[0], 0, v[1])).toISOString().slice(0, 10);
      }
    }
    if (e.temperature !== undefined) vars.temperature = e.temperature;
    if (Array.isArray(e.symptoms)) vars.symptoms = e.symptoms.map((s) => TEXT["sym." + s] ? t("sym." + s) : s).join(", ");
    const li = h("li", null);
    const key = "ev." + e.kind;
    const text = TEXT[key] ? t(key, vars) : (e.kind || "evidence");
    // Division codes inside the text become names.
    const parts = text.split(/(\b\d{6,12}\b)/);
    for (const part of parts) li.append(/^\d{6,12}$/.test(part) ? placeName(part) : part);
    const at = ev.meta && ev.meta.occurred_at;
    if (at) li.append(h("span", { class: "muted small" }, " · " + when(at)));
    return li;
  }
  const KIND_FOR_REASON = {
    RISK_AREA_DWELL: ["dwell_reported"], RISK_AREA_TRAVEL: ["travel_recorded", "health_declared"],
    RISK_AREA_VENUE_VISIT: ["venue_visited"], DECLARED_FEVER_OR_SYMPTOMS: ["health_declared"],
    CONFIRMED_OR_POSITIVE: ["diagnosis_confirmed", "nucleic_acid_tested", "antibody_tested"],
    CLOSE_CONTACT: ["close_contact_identified"], FEVER_PENDING_TEST: ["temperature_measured"],
  };
  // `c`: {colour, reason, rule, policy, since, region}; `history`: the person's events.
  function explanation(c, history, at) {
    if (!c) return h("p", { class: "muted" }, t("colour.none"));
    const box = h("div", { class: "explain " + c.colour, "data-reason": c.reason, "data-colour": c.colour });
    const plain = TEXT["reason." + c.reason] ? t("reason." + c.reason) : c.reason;
    box.append(h("p", { class: "plain" }, pill(c.colour, colourName(c.colour)), " ", plain));
    box.append(h("p", { class: "small muted" },
      t("citizen.rule") + ": " + c.rule + " · " + t("citizen.policy") + ": " + c.policy + " · " +
      t("citizen.since") + ": " + when(c.since) + " · " + c.reason));
    const events = history || [];
    const byId = new Map();
    for (const ev of events) if (ev.type === "EvidenceRecorded.v1" && ev.meta) byId.set(ev.meta.id, ev);
    let cited = (c.evidence || []).map((id) => byId.get(id)).filter(Boolean);
    if (!cited.length && KIND_FOR_REASON[c.reason]) {
      const kinds = KIND_FOR_REASON[c.reason];
      const limit = (at ? new Date(at) : new Date()).getTime();
      cited = events.filter((ev) => ev.type === "EvidenceRecorded.v1" && ev.evidence && kinds.includes(ev.evidence.kind) &&
        new Date(ev.meta.occurred_at).getTime() <= limit).slice(-5);
    }
    // An official's correction: its reason, legal basis and end.
    if (c.reason === "OFFICIAL_OVERRIDE") {
      const limit = (at ? new Date(at) : new Date(Date.now() + 3600e3)).getTime();
      const o = events.filter((ev) => ev.type === "ColourOverridden.v1" && new Date(ev.at).getTime() <= limit).pop();
      if (o) {
        box.append(h("p", { class: "override" }, t("override.why", { reason: o.reason, basis: o.legal_basis, until: when(o.expires_at) })));
      }
    }
    box.append(h("h3", null, t("citizen.evidence")));
    box.append(cited.length ? h("ul", { class: "evidence" }, cited.map(describeEvidence)) : h("p", { class: "muted small" }, t("citizen.no_evidence")));
    return box;
  }
  // The ColourChanged event in force at `at` (ISO or Date) for `region`.
  function colourAsOf(history, at, region) {
    const limit = new Date(at).getTime();
    let found = null;
    for (const ev of history || []) {
      if (ev.type !== "ColourChanged.v1") continue;
      if (region && ev.region !== region) continue;
      if (new Date(ev.at).getTime() <= limit) found = ev;
    }
    return found && {
      colour: found.colour, reason: found.reason, rule: found.rule_id,
      policy: found.policy_id + " v" + found.policy_version, since: found.at, region: found.region, evidence: found.evidence,
    };
  }
  function currentColour(person) {
    const c = person.colour;
    if (!c) return null;
    const latest = colourAsOf(person.history, new Date(Date.now() + 3600e3), c.region);
    return { colour: c.colour, reason: c.reason, rule: c.ruleId, policy: c.policy, since: c.since, region: c.region,
      evidence: latest && latest.colour === c.colour ? latest.evidence : [] };
  }

  // ---------------------------------------------------------------- pages
  const main = document.getElementById("main");
  let cleanups = [];
  // Each render is a generation; a page whose generation has passed (the
  // person moved on while it was loading) stops and cleans up at once.
  let generation = 0;
  function onLeave(fn, gen) {
    if (gen !== undefined && gen !== generation) { fn(); return; }
    cleanups.push(fn);
  }

  const ROLE_PAGE = { citizen: "citizen", checkpoint: "checkpoint", health_official: "official", auditor: "auditor", admin: "auditor" };
  const PAGE_ROLES = { citizen: ["citizen"], checkpoint: ["checkpoint"], official: ["health_official"], auditor: ["auditor", "admin"] };
  const PAGES = { citizen: citizenPage, checkpoint: checkpointPage, official: officialPage, auditor: auditorPage };

  function renderNav(page) {
    const nav = clear(document.getElementById("nav"));
    const links = me ? Object.keys(PAGE_ROLES).filter((p) => PAGE_ROLES[p].includes(me.role)) : ["signin"];
    for (const p of links) {
      nav.append(h("a", { href: "#/" + p, id: "nav-" + p, "aria-current": p === page ? "page" : null }, t("nav." + p)));
    }
    const so = document.getElementById("signout");
    so.hidden = !token; so.textContent = t("signout");
    document.getElementById("lang").textContent = t("lang.switch");
    document.getElementById("foot-text").textContent = t("foot") + " · ";
    document.getElementById("skip-link").textContent = lang === "zh" ? "跳到正文" : "Skip to content";
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  }

  async function render() {
    const gen = ++generation;
    for (const fn of cleanups.splice(0)) { try { fn(); } catch (_) { /* already gone */ } }
    live.close();
    const page = (location.hash.replace(/^#\/?/, "") || "").split("?")[0];
    clear(main);
    if (!token) {
      renderNav("signin");
      return signinPage();
    }
    if (!me) {
      renderNav(page);
      main.append(loading());
      try {
        me = (await gql("{ whoami { id role region } }")).whoami;
        if (gen !== generation) return;
      } catch (e) {
        if (gen !== generation) return;
        clear(main);
        if (e.code === "UNAUTHENTICATED") {
          // The banner says why; the sign-in page asks for a new token.
          token = ""; me = null; sessionStorage.removeItem(TOKEN_KEY);
          renderNav("signin");
          return signinPage();
        }
        main.append(errorBox(e, render));
        return;
      }
      clear(main);
    }
    renderNav(page);
    if (!page || page === "signin" || !PAGE_ROLES[page]) {
      const target = ROLE_PAGE[me.role];
      if (target) { location.hash = "#/" + target; return; }
      main.append(card(t("home.title"), h("p", null, t("home.lead", { role: roleName(me.role) }))));
      return;
    }
    if (!PAGE_ROLES[page].includes(me.role)) {
      main.append(h("div", { class: "error", role: "alert" },
        t("err.wrong_role", { role: PAGE_ROLES[page].map(roleName).join(" / "), have: roleName(me.role) })));
      return;
    }
    document.title = t("nav." + page) + " · 通办 Tongban";
    await PAGES[page](gen);
  }

  // ------------------------------------------------------------- sign-in
  function signinPage() {
    document.title = t("nav.signin") + " · 通办 Tongban";
    const input = h("textarea", { id: "token", autocomplete: "off", spellcheck: "false", "aria-describedby": "signin-lead", rows: "4" });
    const status = h("div", { id: "signin-status", "aria-live": "polite" });
    const form = h("form", { id: "signin-form" },
      h("p", { id: "signin-lead" }, t("signin.lead")),
      h("label", { for: "token" }, t("signin.token")), input,
      h("div", { class: "actions" }, h("button", { type: "submit", id: "signin-go" }, t("signin.go"))), status);
    async function signInWith(value) {
      token = value; me = null;
      clear(status).append(h("p", { class: "loading" }, t("signin.checking")));
      try {
        me = (await gql("{ whoami { id role region } }")).whoami;
        sessionStorage.setItem(TOKEN_KEY, token);
        hideBanner();
        const target = "#/" + (ROLE_PAGE[me.role] || "");
        if (location.hash === target) render(); else location.hash = target;
      } catch (e) {
        token = ""; me = null;
        hideBanner();
        clear(status).append(errorBox(e));
      }
    }
    // A token has no line breaks: Enter signs in (Shift+Enter is ignored).
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = input.value.trim().replace(/^Bearer\s+/i, "");
      if (!value) { clear(status).append(h("div", { class: "error", role: "alert" }, t("signin.empty"))); return; }
      signInWith(value);
    });
    // Development mode: the demo's roles, one button each.
    const dev = h("div", { id: "demo-roles" }, loading());
    main.append(h("div", { class: "grid two" }, card(t("signin.title"), form), card(t("signin.dev"), dev)));
    input.focus();
    gql("{ demoRoles { label role token } }").then((d) => {
      clear(dev);
      if (!d.demoRoles.length) { dev.append(h("p", { class: "na" }, t("signin.dev_none")), h("p", { class: "small muted" }, t("signin.dev_help"))); return; }
      dev.append(h("p", { class: "small muted" }, t("signin.dev_pick")), h("div", { class: "role-grid" }, d.demoRoles.map((r) =>
        h("button", { type: "button", class: "secondary", "data-role": r.role, onclick: () => signInWith(r.token) }, r.label))));
    }).catch((e) => clear(dev).append(errorBox(e)));
  }

  // -------------------------------------------------------------- citizen
  const ME = `query($pos: Int) { me(minPosition: $pos) {
    id homeRegion residence
    colour { region colour reason ruleId policy since }
    code { codeId colour expiresAt }
    travelHistory(days: 14) { date county name source }
    accessLog(limit: 50) { by role purpose fields at }
    appeals { appealId region colour reason status filedAt decision }
    history } }`;

  // The last code shown, reused when the page is drawn again (another
  // language, back from another page) while it is still valid.
  let lastCode = null;

  async function citizenPage(gen) {
    main.append(h("h1", null, t("citizen.title")));
    const body = h("div", { class: "grid two", id: "citizen" }, loading());
    main.append(body);
    let person = null;
    let code = null;
    let refreshing = false;
    let tick = null;
    const codeCard = h("section", { class: "card code-card", id: "code-card", "aria-live": "polite" });
    const whyCard = card(t("citizen.why"));
    whyCard.id = "why";
    const travelCard = card(t("citizen.travel"));
    const appealsList = h("div", { id: "appeals" });
    const accessCard = card(t("citizen.access"));
    accessCard.id = "access";
    const notice = h("div", { id: "citizen-notice", role: "status", "aria-live": "assertive" });

    async function load(pos) {
      const d = await gql(ME, { pos: pos || null });
      person = d.me;
      return person;
    }
    async function refreshCode() {
      if (refreshing) return;
      refreshing = true;
      try {
        const d = await gql("mutation { generateCode { codeId colour region expiresAt text svg position } }");
        code = d.generateCode;
        lastCode = { owner: me.id, code };
        drawCode();
      } catch (e) {
        clear(codeCard).append(errorBox(e, refreshCode));
      } finally { refreshing = false; }
    }
    function drawCode() {
      clear(codeCard);
      if (!code) { codeCard.append(loading()); return; }
      const frame = h("div", { class: "code-frame " + code.colour, id: "qr", "data-colour": code.colour, role: "img",
        "aria-label": colourName(code.colour) });
      // Rendered by the server (health-code crate) in the CSS colour named
      // by the code; pure yellow on white is too faint for many scanners,
      // so its modules get a darker amber.
      frame.innerHTML = code.svg.replace(/"yellow"/g, '"#b88a00"');
      const clock = h("div", { class: "clock", id: "clock" });
      const countdown = h("p", { class: "countdown small", id: "countdown" });
      codeCard.append(frame,
        h("p", { class: "code-colour " + code.colour, id: "code-colour" }, colourName(code.colour)),
        h("p", { class: "clock-line" }, h("span", { class: "pulse code-colour " + code.colour, "aria-hidden": "true" }), clock),
        countdown,
        h("p", { class: "small muted" }, t("citizen.valid_until", { t: when(code.expiresAt) }), " · ", t("citizen.anti")),
        h("details", { class: "small" }, h("summary", null, t("citizen.code_text")), h("p", { class: "mono", id: "code-text" }, code.text)));
      const update = () => {
        clock.textContent = new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
        const left = Math.round((new Date(code.expiresAt).getTime() - Date.now()) / 1000) - 30;
        if (left <= 0) { countdown.textContent = t("citizen.refreshing"); refreshCode(); } else countdown.textContent = t("citizen.refresh_in", { s: left });
      };
      update();
      clearInterval(tick);
      tick = setInterval(update, 1000);
    }
    function drawWhy() {
      clear(whyCard).append(h("h2", null, t("citizen.why")), explanation(currentColour(person), person.history));
    }
    function drawTravel() {
      clear(travelCard).append(h("h2", null, t("citizen.travel")));
      if (!person.travelHistory.length) { travelCard.append(h("p", { class: "muted" }, t("citizen.no_travel"))); return; }
      travelCard.append(h("div", { class: "table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, h("th", null, t("citizen.date")), h("th", null, t("citizen.place")), h("th", null, t("citizen.source")))),
        h("tbody", null, person.travelHistory.map((x) => h("tr", null, h("td", null, x.date),
          h("td", null, x.name ? x.name + " (" + x.county + ")" : x.county), h("td", null, x.source)))))));
    }
    function drawAppeals() {
      clear(appealsList).append(h("h3", null, t("citizen.my_appeals")));
      if (!person.appeals.length) { appealsList.append(h("p", { class: "muted small" }, t("citizen.no_appeals"))); return; }
      appealsList.append(h("ul", null, person.appeals.map((a) => h("li", { "data-status": a.status },
        pill(a.colour, colourName(a.colour)), " ", a.reason, " · ", h("strong", null, t("appeal." + a.status)),
        a.decision ? " · " + a.decision : "", h("span", { class: "muted small" }, " · " + when(a.filedAt))))));
    }
    function drawAccess() {
      clear(accessCard).append(h("h2", null, t("citizen.access")));
      if (!person.accessLog.length) { accessCard.append(h("p", { class: "muted" }, t("citizen.no_access"))); return; }
      accessCard.append(h("ul", { class: "access-items" }, person.accessLog.map((a) => h("li", { "data-role": a.role },
        h("div", null, h("strong", null, roleName(a.role)), h("span", { class: "muted small" }, " · " + when(a.at))),
        h("div", null, t("citizen.purpose") + ": " + a.purpose),
        h("div", { class: "small" }, t("citizen.fields") + ": " + a.fields.join(", ")),
        h("div", { class: "mono muted small" }, a.by)))));
    }
    function drawAll() { drawWhy(); drawTravel(); drawAppeals(); drawAccess(); }

    function declareForms() {
      const dStatus = h("div", { "aria-live": "polite" });
      const symptoms = ["fever", "cough", "fatigue", "sore_throat", "loss_of_smell"];
      const dForm = h("form", { id: "declare-form" },
        field("declare-temp", t("citizen.temperature"), h("input", { type: "number", step: "0.1", min: "34", max: "43", value: "36.5", required: true })),
        h("fieldset", { class: "checks" }, h("legend", null, t("citizen.symptoms")),
          symptoms.map((s) => h("label", null, h("input", { type: "checkbox", name: "symptom", value: s }), t("sym." + s)))),
        field("declare-visited", t("citizen.visited"), h("input", { type: "text", inputmode: "numeric", placeholder: "110105, 310101" })),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t("citizen.declare_go"))), dStatus);
      submitting(dForm, dStatus, async () => {
        const visited = dForm.querySelector("#declare-visited").value.split(/[\s,，]+/).filter(Boolean);
        const sym = [...dForm.querySelectorAll("input[name=symptom]:checked")].map((x) => x.value);
        const r = (await gql(`mutation($t: Float!, $s: [String!]!, $v: [String!]!) {
          declareHealth(temperature: $t, symptoms: $s, visited: $v) { position colour } }`,
        { t: parseFloat(dForm.querySelector("#declare-temp").value), s: sym, v: visited })).declareHealth;
        await reload(r.position);
        return t("citizen.declared", { c: colourName(person.colour && person.colour.colour) });
      });
      const tStatus = h("div", { "aria-live": "polite" });
      const today = new Date().toISOString().slice(0, 10);
      const tForm = h("form", { id: "trip-form" },
        h("div", { class: "row" },
          field("trip-mode", t("citizen.mode"), h("select", null, ["RAIL", "AIR", "ROAD"].map((m) => h("option", { value: m }, t("mode." + m))))),
          field("trip-date", t("citizen.date"), h("input", { type: "date", value: today, required: true }))),
        h("div", { class: "row" },
          field("trip-from", t("citizen.from"), h("input", { type: "text", inputmode: "numeric", required: true, placeholder: "110105" })),
          field("trip-to", t("citizen.to"), h("input", { type: "text", inputmode: "numeric", required: true, placeholder: "310101" }))),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t("citizen.trip_go"))), tStatus);
      submitting(tForm, tStatus, async () => {
        const v = (id) => tForm.querySelector(id).value.trim();
        const r = (await gql(`mutation($trips: [TripInput!]!) { declareItinerary(trips: $trips) { position colour } }`,
          { trips: [{ mode: v("#trip-mode"), from: v("#trip-from"), to: v("#trip-to"), date: v("#trip-date") }] })).declareItinerary;
        await reload(r.position);
        return t("citizen.declared", { c: colourName(person.colour && person.colour.colour) });
      });
      const aStatus = h("div", { "aria-live": "polite" });
      const aForm = h("form", { id: "appeal-form" },
        field("appeal-reason", t("citizen.appeal_reason"), h("textarea", { required: true, rows: "3" })),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t("citizen.appeal_go"))), aStatus);
      submitting(aForm, aStatus, async () => {
        const region = (person.colour && person.colour.region) || person.homeRegion;
        const r = (await gql(`mutation($r: String!, $why: String!) { correctInformation(region: $r, reason: $why) { position id } }`,
          { r: region, why: aForm.querySelector("#appeal-reason").value })).correctInformation;
        aForm.querySelector("#appeal-reason").value = "";
        await reload(r.position);
        return t("citizen.appeal_filed", { id: r.id });
      });
      return [card(t("citizen.declare"), dForm), card(t("citizen.itinerary"), tForm), card(t("citizen.appeal"), aForm, appealsList)];
    }
    async function reload(pos) {
      await load(pos);
      drawAll();
    }
    function registerForm() {
      const status = h("div", { "aria-live": "polite" });
      const form = h("form", { id: "register-form" },
        h("p", null, t("citizen.register_lead")),
        h("div", { class: "row" },
          field("reg-name", t("citizen.name"), h("input", { required: true, autocomplete: "name" })),
          field("reg-phone", t("citizen.phone"), h("input", { required: true, inputmode: "tel", autocomplete: "tel" }))),
        h("div", { class: "row" },
          field("reg-kind", t("citizen.id_kind"), h("select", null, ["resident_id", "passport", "travel_permit"].map((k) => h("option", { value: k }, t("id." + k))))),
          field("reg-number", t("citizen.id_number"), h("input", { required: true, autocomplete: "off" }))),
        h("div", { class: "row" },
          field("reg-home", t("citizen.home"), h("input", { required: true, value: "11", inputmode: "numeric" })),
          field("reg-residence", t("citizen.residence"), h("input", { required: true, inputmode: "numeric", placeholder: "110105001001" }))),
        h("div", { class: "actions" }, h("button", { type: "submit" }, t("citizen.register_go"))), status);
      submitting(form, status, async () => {
        const v = (id) => form.querySelector(id).value.trim();
        await gql(`mutation($i: RegisterPersonInput!) { registerPerson(input: $i) { position } }`, { i: {
          homeRegion: v("#reg-home"), residence: v("#reg-residence"), idKind: v("#reg-kind"), idNumber: v("#reg-number"), name: v("#reg-name"), phone: v("#reg-phone") } });
        render();
        return "";
      });
      return card(t("citizen.register"), form);
    }

    try {
      await load();
    } catch (e) {
      if (gen === generation) clear(body).append(errorBox(e, render));
      return;
    }
    if (gen !== generation) return;
    clear(body);
    if (!person) { body.append(registerForm()); return; }
    body.append(codeCard, h("div", null, notice, whyCard), travelCard, ...declareForms(), accessCard);
    drawCode();
    drawAll();
    onLeave(() => clearInterval(tick), gen);
    const reusable = lastCode && lastCode.owner === me.id && lastCode.code.colour === (person.colour && person.colour.colour) &&
      new Date(lastCode.code.expiresAt).getTime() - Date.now() > 60000;
    if (reusable) { code = lastCode.code; drawCode(); } else await refreshCode();
    if (gen !== generation) return;

    // Colour changes arrive live: history first, then new ones.
    let pending = null;
    const unsubscribe = live.subscribe("subscription($after: String) { colourChanged(after: $after) { cursor colour previous reason at } }", {},
      (change) => {
        if (!change || !code || change.colour === code.colour) return;
        // History replayed on (re)subscribing is older than what the page shows.
        const since = person && person.colour ? new Date(person.colour.since).getTime() : 0;
        if (new Date(change.at).getTime() <= since) return;
        clearTimeout(pending);
        pending = setTimeout(async () => {
          try {
            await reload();
            await refreshCode();
            clear(notice).append(h("div", { class: "explain " + code.colour }, h("p", { class: "plain" }, t("citizen.changed", { c: colourName(code.colour) }))));
          } catch (e) { clear(notice).append(errorBox(e)); }
        }, 150);
      }, (e) => clear(notice).append(errorBox(e)));
    onLeave(() => { clearTimeout(pending); unsubscribe(); }, gen);
  }

  // ----------------------------------------------------------- checkpoint
  async function checkpointPage(gen) {
    main.append(h("h1", null, t("checkpoint.title")));
    const body = h("div", { class: "grid two", id: "checkpoint" }, loading());
    main.append(body);
    let cp;
    const Q = `query($id: ID!) { checkpoint(id: $id) { id name place placeCode admission scans(limit: 10) { colour admitted reason temperature at } } }`;
    try {
      cp = (await gql(Q, { id: me.id })).checkpoint;
    } catch (e) { if (gen === generation) clear(body).append(errorBox(e, render)); return; }
    if (gen !== generation) return;
    clear(body);
    if (!cp) { body.append(errorBox(new ApiError("NOT_FOUND", me.id))); return; }

    const verdict = h("div", { id: "verdict", "aria-live": "assertive", role: "status" });
    const codeInput = h("textarea", { rows: "3", spellcheck: "false", autocomplete: "off", placeholder: "HC1:…" });
    const tempInput = h("input", { type: "number", step: "0.1", min: "30", max: "45", inputmode: "decimal" });
    const form = h("form", { id: "scan-form" },
      field("scan-code", t("checkpoint.paste"), codeInput),
      field("scan-temp", t("checkpoint.temp"), tempInput),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "scan-go" }, t("checkpoint.go"))));
    const video = h("video", { id: "camera", playsinline: true, muted: true, hidden: true });
    const camStatus = h("p", { class: "small", "aria-live": "polite" });
    const camButton = h("button", { type: "button", class: "secondary", id: "camera-go" }, t("checkpoint.camera"));
    const upload = h("input", { type: "file", accept: "image/*", id: "scan-upload" });
    const recent = h("div", { id: "recent" });

    // Who the code belongs to, masked, and when it was generated: the guard
    // compares them with the person and their ID (a screenshot of someone
    // else's code shows someone else's name).
    function holderBox(r) {
      if (!r.issuedAt) return null;
      const rows = [];
      if (r.holder && !r.holder.erased) {
        rows.push(h("div", { class: "holder-name", id: "verdict-name" }, t("checkpoint.holder") + ": ", h("strong", null, r.holder.maskedName)));
        rows.push(h("div", { class: "mono", id: "verdict-id" }, t("checkpoint.id_number") + ": " + r.holder.maskedIdNumber));
      } else if (r.holder && r.holder.erased) {
        rows.push(h("div", { id: "verdict-erased" }, t("checkpoint.erased")));
      }
      rows.push(h("div", { id: "verdict-issued" }, t("checkpoint.issued") + ": " + when(r.issuedAt)));
      if (r.holder && !r.holder.erased) rows.push(h("div", { class: "small" }, t("checkpoint.compare")));
      if (r.checkedOnline === false) rows.push(h("div", { class: "small", id: "verdict-offline" }, t("checkpoint.offline")));
      if (r.source === "upload" || r.source === "paste") rows.push(h("div", { class: "small", id: "verdict-source", "data-source": r.source }, t("checkpoint.from_" + r.source)));
      return h("div", { class: "holder" }, rows);
    }
    function showVerdict(r) {
      const ok = !!r.admitted;
      const why = r.reason === "INVALID" ? t("scan.INVALID", { msg: r.message })
        : TEXT["scan." + r.reason] ? t("scan." + r.reason, { c: colourName(r.colour) }) : r.reason;
      clear(verdict).append(h("div", { class: "verdict " + (ok ? "admitted" : "denied"), "data-admitted": String(ok), "data-reason": r.reason, "data-online": String(r.checkedOnline !== false) },
        h("div", { class: "big" }, ok ? "✓ " + t("checkpoint.admitted") : "✕ " + t("checkpoint.denied")),
        r.colour ? h("div", { class: "why" }, pill(r.colour, colourName(r.colour))) : null,
        h("div", { class: "why" }, why),
        holderBox(r)));
      verdict.scrollIntoView({ block: "start", behavior: "smooth" });
    }
    async function scan(text, source) {
      const temp = tempInput.value ? parseFloat(tempInput.value) : null;
      clear(verdict).append(loading());
      try {
        const r = (await gql(`mutation($c: String!, $t: Float) { scanCode(code: $c, temperature: $t) {
            admitted colour signedColour reason checkedOnline issuedAt expiresAt scanId position
            holder { maskedName idKind maskedIdNumber erased } } }`,
          { c: text.trim(), t: temp })).scanCode;
        showVerdict(Object.assign({ source: source }, r));
        codeInput.value = ""; tempInput.value = "";
        loadRecent(r.position);
      } catch (e) {
        if (e.code === "UNAUTHENTICATED" || e.code === "NETWORK" || e.code === "FORBIDDEN") clear(verdict).append(errorBox(e));
        else showVerdict({ admitted: false, reason: "INVALID", message: e.message });
      }
    }
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (!codeInput.value.trim()) { codeInput.focus(); return; }
      scan(codeInput.value, "paste");
    });
    async function decodeImage(source, w, hgt) {
      const canvas = document.createElement("canvas");
      canvas.width = w; canvas.height = hgt;
      const g = canvas.getContext("2d", { willReadFrequently: true });
      g.drawImage(source, 0, 0, w, hgt);
      const img = g.getImageData(0, 0, w, hgt);
      const found = window.jsQR ? window.jsQR(img.data, w, hgt) : null;
      return found ? found.data : null;
    }
    upload.addEventListener("change", async () => {
      const file = upload.files && upload.files[0];
      if (!file) return;
      try {
        const bmp = await createImageBitmap(file);
        const text = await decodeImage(bmp, bmp.width, bmp.height);
        if (!text) { camStatus.textContent = t("checkpoint.upload_none"); return; }
        codeInput.value = text;
        scan(text, "upload");
      } catch (_) { camStatus.textContent = t("checkpoint.upload_none"); }
      upload.value = "";
    });
    let stream = null;
    let raf = null;
    function stopCamera() {
      cancelAnimationFrame(raf);
      if (stream) for (const tr of stream.getTracks()) tr.stop();
      stream = null; video.hidden = true; camButton.textContent = t("checkpoint.camera");
    }
    camButton.addEventListener("click", async () => {
      if (stream) { stopCamera(); return; }
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { camStatus.textContent = t("checkpoint.camera_na"); return; }
      try {
        stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
      } catch (_) { camStatus.textContent = t("checkpoint.camera_na"); return; }
      video.srcObject = stream; video.hidden = false; camButton.textContent = t("checkpoint.camera_stop");
      await video.play().catch(() => {});
      const loop = async () => {
        if (!stream) return;
        if (video.videoWidth) {
          const text = await decodeImage(video, video.videoWidth, video.videoHeight);
          if (text) { stopCamera(); codeInput.value = text; scan(text, "camera"); return; }
        }
        raf = requestAnimationFrame(loop);
      };
      loop();
    });
    onLeave(stopCamera);

    async function loadRecent(pos) {
      try {
        const d = await gql(`query($id: ID!, $pos: Int) { checkpoint(id: $id, minPosition: $pos) { scans(limit: 10) { colour admitted reason temperature at } } }`, { id: me.id, pos: pos || null });
        drawRecent(d.checkpoint ? d.checkpoint.scans : []);
      } catch (e) { clear(recent).append(errorBox(e)); }
    }
    function drawRecent(scans) {
      clear(recent).append(h("h2", null, t("checkpoint.recent")));
      if (!scans.length) { recent.append(h("p", { class: "muted" }, t("checkpoint.none"))); return; }
      const sorted = [...scans].sort((a, b) => new Date(b.at) - new Date(a.at));
      recent.append(h("ul", { class: "scan-items" }, sorted.map((s) => h("li", { "data-admitted": String(s.admitted) },
        h("div", null, pill(s.colour, colourName(s.colour)), " ", h("strong", null, s.admitted ? t("checkpoint.admitted") : t("checkpoint.denied")),
          h("span", { class: "muted small" }, " · " + when(s.at) + (s.temperature ? " · " + s.temperature + " °C" : ""))),
        h("div", { class: "small" }, TEXT["scan." + s.reason] ? t("scan." + s.reason, { c: colourName(s.colour) }) : s.reason)))));
    }

    const placeBox = h("div", { class: "place-qr", id: "place-qr" });
    try {
      const qr = window.qrcode(0, "M");
      qr.addData(cp.placeCode);
      qr.make();
      placeBox.innerHTML = qr.createSvgTag({ cellSize: 4, margin: 2, scalable: true, alt: t("checkpoint.place") });
    } catch (e) { placeBox.append(h("p", { class: "mono" }, cp.placeCode)); }
    const admits = (cp.admission && cp.admission.admit) || [];

    body.append(
      card(t("checkpoint.scan") + " · " + cp.name, verdict, h("div", { class: "actions" }, camButton,
        h("label", { for: "scan-upload", class: "small" }, t("checkpoint.upload")), upload), camStatus, video, form),
      h("div", null,
        card(t("checkpoint.place"), h("p", null, h("strong", null, cp.name), " · ", placeName(cp.place)), placeBox,
          h("p", { class: "small muted" }, t("checkpoint.place_help")),
          h("p", { class: "small" }, t("checkpoint.admit_policy") + ": ", admits.map((c) => pill(c, colourName(c))))),
        h("section", { class: "card", style: "margin-top:1rem" }, recent)));
    drawRecent(cp.scans);
    codeInput.focus();
  }

  // -------------------------------------------------------------- official
  async function officialPage(gen) {
    const region = me.region;
    main.append(h("h1", null, t("official.title"), " ", h("span", { class: "muted small" }, t("official.region", { r: "" }), placeName(region))));
    const grid = h("div", { class: "grid two", id: "official" });
    main.append(grid);

    // Colour counts per district over time.
    const countsCard = card(t("official.counts"));
    countsCard.classList.add("span2");
    const select = h("select", { id: "district" }, h("option", { value: "" }, t("official.all")));
    const chartEl = h("div", { class: "chart", id: "chart", role: "img", "aria-label": t("official.counts") });
    const bars = h("div", { class: "bars", id: "bars" }, loading());
    countsCard.append(h("p", { class: "small muted" }, t("official.chart_help")),
      field("district", t("official.district"), select), chartEl, bars);
    const series = { times: [], rows: [] }; // rows: [{county: {g,y,r}}]
    let plot = null;
    let countsTimer = null;
    function totals(row, county) {
      let g = 0, y = 0, r = 0;
      for (const [k, v] of Object.entries(row)) if (!county || k === county) { g += v.g; y += v.y; r += v.r; }
      return [g, y, r];
    }
    // The server's hourly history (counts at the end of each hour, for the
    // chosen district or the whole region) followed by this page's own live
    // samples. A region the history does not cover (a street) has only the
    // live samples.
    const past = { scope: null, times: [], g: [], y: [], r: [] };
    async function loadHistory() {
      const scope = select.value || region;
      if (!/^(\d{2}|\d{4}|\d{6})$/.test(scope)) { Object.assign(past, { scope, times: [], g: [], y: [], r: [] }); return; }
      const now = new Date();
      const from = new Date(now.getTime() - 48 * 3600 * 1000);
      try {
        const hours = (await gql(`query($r: String!, $f: String, $t: String) { colourCountHistory(region: $r, from: $f, to: $t) { hour green yellow red } }`,
          { r: scope, f: from.toISOString(), t: now.toISOString() })).colourCountHistory;
        const next = { scope, times: [], g: [], y: [], r: [] };
        const nowS = now.getTime() / 1000;
        for (const b of hours) {
          const end = Math.min(Date.parse(b.hour) / 1000 + 3600, nowS);
          if (isNaN(end)) continue;
          next.times.push(end); next.g.push(b.green); next.y.push(b.yellow); next.r.push(b.red);
        }
        Object.assign(past, next);
        chartEl.dataset.history = String(next.times.length);
      } catch (_) {
        // The live samples still draw; the history is a bonus, not a must.
        Object.assign(past, { scope, times: [], g: [], y: [], r: [] });
        chartEl.dataset.history = "0";
      }
    }
    function drawChart() {
      const county = select.value;
      const data = [[], [], [], []];
      const firstLive = series.times.length ? series.times[0] : Infinity;
      for (let i = 0; i < past.times.length; i++) {
        if (past.times[i] >= firstLive) break;
        data[0].push(past.times[i]); data[1].push(past.g[i]); data[2].push(past.y[i]); data[3].push(past.r[i]);
      }
      for (let i = 0; i < series.rows.length; i++) {
        const [g, y, r] = totals(series.rows[i], county);
        data[0].push(series.times[i]); data[1].push(g); data[2].push(y); data[3].push(r);
      }
      const width = Math.max(260, chartEl.clientWidth || 600);
      if (!window.uPlot) { clear(chartEl).append(h("p", { class: "na" }, t("na"))); return; }
      if (plot) { plot.setData(data); fitTime(data[0]); return; }
      plot = new window.uPlot({
        width, height: 240,
        series: [{}, { label: colourName("green"), stroke: "#15803d", width: 2, points: { show: true, size: 6 } },
          { label: colourName("yellow"), stroke: "#d4a106", width: 2, points: { show: true, size: 6 } },
          { label: colourName("red"), stroke: "#b91c1c", width: 2, points: { show: true, size: 6 } }],
        axes: [{}, { size: 60 }],
        scales: { x: { time: true } },
      }, data, chartEl);
      fitTime(data[0]);
    }
    // A short series still shows the last ten minutes, not a span of years.
    function fitTime(ts) {
      if (!plot || !ts.length) return;
      const last = ts[ts.length - 1];
      if (last - ts[0] < 600) plot.setScale("x", { min: last - 600, max: last + 30 });
    }
    function drawBars(rows) {
      clear(bars);
      for (const c of rows) {
        const total = c.green + c.yellow + c.red || 1;
        bars.append(h("div", { class: "bar", "data-county": c.county, "data-green": c.green, "data-yellow": c.yellow, "data-red": c.red },
          h("span", null, (c.name || c.county)),
          h("span", { class: "track", "aria-hidden": "true" },
            h("span", { class: "g", style: "width:" + (100 * c.green / total) + "%" }),
            h("span", { class: "y", style: "width:" + (100 * c.yellow / total) + "%" }),
            h("span", { class: "r", style: "width:" + (100 * c.red / total) + "%" })),
          h("span", { class: "small" }, `${c.green} / ${c.yellow} / ${c.red}`)));
      }
    }
    async function loadCounts() {
      try {
        const rows = (await gql(`query($r: String!) { colourCounts(region: $r) { county name green yellow red } }`, { r: region })).colourCounts;
        rows.sort((a, b) => a.county.localeCompare(b.county));
        const row = {};
        for (const c of rows) row[c.county] = { g: c.green, y: c.yellow, r: c.red };
        series.times.push(Date.now() / 1000); series.rows.push(row);
        if (series.times.length > 500) { series.times.shift(); series.rows.shift(); }
        const known = new Set([...select.options].map((o) => o.value));
        for (const c of rows) if (!known.has(c.county)) select.append(h("option", { value: c.county }, (c.name || c.county) + " " + c.county));
        drawBars(rows);
        drawChart();
      } catch (e) { clear(bars).append(errorBox(e, loadCounts)); }
    }
    select.addEventListener("change", async () => { await loadHistory(); drawChart(); });
    const sampler = setInterval(loadCounts, 60000);
    onLeave(() => clearInterval(sampler));
    const onResize = () => { if (plot) plot.setSize({ width: Math.max(260, chartEl.clientWidth), height: 240 }); };
    window.addEventListener("resize", onResize);
    onLeave(() => { window.removeEventListener("resize", onResize); clearTimeout(countsTimer); if (plot) plot.destroy(); });

    // Risk areas.
    const riskCard = card(t("official.risk"));
    riskCard.id = "risk";
    const riskList = h("div", { id: "risk-list" }, loading());
    const riskStatus = h("div", { "aria-live": "polite", id: "risk-status" });
    const levelSelect = (value, id) => h("select", { id, "aria-label": t("official.level") },
      ["high", "medium", "low"].map((l) => h("option", { value: l.toUpperCase(), selected: l === value }, levelName(l))));
    const riskForm = h("form", { id: "risk-form" }, h("div", { class: "row" },
      field("risk-area", t("official.area"), h("input", { required: true, inputmode: "numeric", placeholder: "110106018" })),
      field("risk-level", t("official.level"), levelSelect("high")),
      h("button", { type: "submit", id: "risk-declare" }, t("official.declare"))), riskStatus);
    async function declare(area, level) {
      const r = (await gql(`mutation($a: String!, $l: Level!) { declareRiskArea(area: $a, level: $l) { position events } }`, { a: area, l: level })).declareRiskArea;
      await loadRisk(r.position);
      return t("official.declared", { a: area, l: levelName(level.toLowerCase()) });
    }
    submitting(riskForm, riskStatus, async () => {
      const area = riskForm.querySelector("#risk-area");
      const msg = await declare(area.value.trim(), riskForm.querySelector("#risk-level").value);
      area.value = "";
      return msg;
    });
    async function loadRisk(pos) {
      try {
        const areas = (await gql(`query($r: String!, $pos: Int) { riskAreas(within: $r, minPosition: $pos) { area name level since } }`, { r: region, pos: pos || null })).riskAreas;
        clear(riskList);
        if (!areas.length) { riskList.append(h("p", { class: "muted" }, t("official.no_risk"))); return; }
        riskList.append(h("ul", { class: "risk-items" }, areas.map((a) => {
          const sel = levelSelect(a.level, "level-" + a.area);
          const status = h("span", { class: "small" });
          const act = (fn) => async () => {
            clear(status).append(h("span", { class: "loading" }, t("saving")));
            try { clear(riskStatus).append(h("div", { class: "ok", role: "status" }, await fn())); } catch (e) { clear(status).append(errorBox(e)); }
          };
          return h("li", { "data-area": a.area, "data-level": a.level },
            h("div", { class: "risk-head" }, h("strong", null, a.name || a.area), " ", h("span", { class: "mono muted" }, a.area), " ",
              pill(a.level, levelName(a.level)), h("span", { class: "small muted" }, " " + t("citizen.since") + " " + when(a.since))),
            h("div", null, h("div", { class: "row" }, sel,
              h("button", { type: "button", class: "secondary", onclick: act(() => declare(a.area, sel.value)) }, t("official.change")),
              h("button", { type: "button", class: "danger", onclick: act(async () => {
                const r = (await gql(`mutation($a: String!) { liftRiskArea(area: $a) { position } }`, { a: a.area })).liftRiskArea;
                await loadRisk(r.position);
                return t("official.lifted", { a: a.name || a.area });
              }) }, t("official.lift"))), status));
        })));
      } catch (e) { clear(riskList).append(errorBox(e, () => loadRisk())); }
    }
    riskCard.append(riskForm, riskList, h("p", { class: "small muted" }, t("official.sweep_note")));

    // Appeals.
    const appealsCard = card(t("official.appeals"));
    appealsCard.id = "appeals-queue";
    const appealsList = h("div", { id: "appeals-list" }, loading());
    appealsCard.append(h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "appeals-refresh", onclick: () => loadAppeals() }, t("official.refresh"))), appealsList);
    // Every 30 s, unless the official is writing a decision.
    const appealsTimer = setInterval(() => {
      const busy = appealsList.contains(document.activeElement) || [...appealsList.querySelectorAll("input")].some((i) => i.value);
      if (!busy) loadAppeals();
    }, 30000);
    onLeave(() => clearInterval(appealsTimer));
    async function loadAppeals(pos) {
      try {
        const list = (await gql(`query($r: String!, $pos: Int) { appeals(region: $r, minPosition: $pos) { appealId personId region colour reason status filedAt } }`, { r: region, pos: pos || null })).appeals;
        clear(appealsList);
        if (!list.length) { appealsList.append(h("p", { class: "muted" }, t("official.no_appeals"))); return; }
        for (const a of list) {
          const reason = h("input", { type: "text", "aria-label": t("official.decision"), placeholder: t("official.decision") });
          const status = h("div", { "aria-live": "polite" });
          const run = (fn) => async () => {
            if (!reason.value.trim()) { reason.focus(); return; }
            clear(status).append(h("span", { class: "loading" }, t("saving")));
            try { const r = await fn(); await loadAppeals(r.position); } catch (e) { clear(status).append(errorBox(e)); }
          };
          appealsList.append(h("div", { class: "explain " + a.colour, "data-appeal": a.appealId },
            h("p", null, pill(a.colour, colourName(a.colour)), " ", h("strong", null, a.reason)),
            h("p", { class: "small muted" }, t("official.person") + " ", h("span", { class: "mono" }, a.personId), " · " + t("official.filed") + " " + when(a.filedAt)),
            reason,
            h("div", { class: "actions" },
              h("button", { type: "button", class: "secondary", onclick: run(async () => (await gql(`mutation($p: ID!, $a: ID!, $why: String!) { upholdAppeal(personId: $p, appealId: $a, reason: $why) { position } }`, { p: a.personId, a: a.appealId, why: reason.value })).upholdAppeal) }, t("official.uphold")),
              h("button", { type: "button", onclick: run(async () => (await gql(`mutation($r: String!, $p: [ID!]!, $a: ID!, $why: String!, $exp: String!) {
                  requestOverride(region: $r, persons: $p, colour: GREEN, legalBasis: "appeal review", reason: $why, appealId: $a, expiresAt: $exp) { position } }`,
              { r: a.region, p: [a.personId], a: a.appealId, why: reason.value, exp: new Date(Date.now() + 14 * 864e5).toISOString() })).requestOverride) }, t("official.override_green"))),
            status));
        }
      } catch (e) { clear(appealsList).append(errorBox(e, () => loadAppeals())); }
    }

    // Bulk overrides awaiting a second official: who asked, what, why;
    // one's own request cannot be approved (the button says why).
    const overridesCard = card(t("official.overrides"));
    overridesCard.id = "pending-overrides";
    const overridesList = h("div", { id: "overrides-list" }, loading());
    const overridesStatus = h("div", { "aria-live": "polite", id: "overrides-status" });
    overridesCard.append(h("p", { class: "small muted" }, t("official.overrides_help")),
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "overrides-refresh", onclick: () => loadOverrides() }, t("official.refresh"))),
      overridesStatus, overridesList);
    const overridesTimer = setInterval(() => { if (!overridesList.querySelector("button:disabled.busy")) loadOverrides(); }, 30000);
    onLeave(() => clearInterval(overridesTimer));
    async function loadOverrides() {
      try {
        const list = (await gql(`query($r: String!) { pendingOverrides(region: $r) { overrideId region regionName colour personCount
            requestedBy ownRequest legalBasis reason appealId caseRef requestedAt expiresAt canApprove cannotApproveBecause } }`, { r: region })).pendingOverrides;
        clear(overridesList);
        if (!list.length) { overridesList.append(h("p", { class: "muted", id: "no-overrides" }, t("official.no_overrides"))); return; }
        overridesList.append(h("ul", { class: "override-items" }, list.map((o) => {
          const status = h("div", { "aria-live": "polite" });
          const why = o.canApprove ? null : (o.ownRequest ? t("official.own_request") : t("official.cannot_approve", { why: o.cannotApproveBecause || "" }));
          const whyId = "why-not-" + o.overrideId;
          const approve = h("button", { type: "button", class: "approve", disabled: !o.canApprove, title: why, "aria-describedby": why ? whyId : null,
            onclick: async () => {
              approve.disabled = true; approve.classList.add("busy");
              clear(status).append(h("span", { class: "loading" }, t("saving")));
              try {
                await gql(`mutation($r: String!, $o: ID!) { approveOverride(region: $r, overrideId: $o) { position } }`, { r: o.region, o: o.overrideId });
                clear(overridesStatus).append(h("div", { class: "ok", role: "status" }, t("official.approved_n", { n: o.personCount })));
                await loadOverrides();
              } catch (e) {
                approve.disabled = false; approve.classList.remove("busy");
                clear(status).append(errorBox(e));
              }
            } }, t("official.approve"));
          return h("li", { class: "explain " + o.colour, "data-override": o.overrideId, "data-own": String(o.ownRequest), "data-can-approve": String(o.canApprove) },
            h("p", { class: "plain" }, pill(o.colour, colourName(o.colour)), " ",
              t("official.override_what", { n: o.personCount, c: colourName(o.colour), r: o.regionName ? o.regionName + " (" + o.region + ")" : o.region })),
            h("p", null, h("strong", null, t("official.override_reason") + ": "), o.reason),
            h("p", { class: "small" }, t("official.legal") + ": " + o.legalBasis + " · " +
              (o.caseRef ? t("official.answers_case", { c: o.caseRef }) : t("official.answers_appeal", { a: o.appealId || "" }))),
            h("p", { class: "small muted" }, t("official.requested_by") + " ", h("span", { class: "mono" }, o.requestedBy),
              o.ownRequest ? " " + t("official.you") : "", " · " + when(o.requestedAt) + " · " + t("official.lapses", { at: when(o.expiresAt) })),
            h("div", { class: "actions" }, approve),
            why ? h("p", { class: "small muted why-not", id: whyId }, why) : null,
            status);
        })));
      } catch (e) { clear(overridesList).append(errorBox(e, () => loadOverrides())); }
    }

    grid.append(countsCard, riskCard, appealsCard, overridesCard);
    await loadHistory();
    await Promise.all([loadCounts(), loadRisk(), loadAppeals(), loadOverrides()]);
    if (gen !== generation) return;

    const unsubColours = live.subscribe("subscription($after: String) { colourChanged(after: $after) { cursor colour } }", {}, () => {
      clearTimeout(countsTimer);
      countsTimer = setTimeout(loadCounts, 400);
    }, (e) => clear(bars).append(errorBox(e)));
    let riskTimer = null;
    const unsubRisk = live.subscribe("subscription($after: String) { riskAreaChanged(after: $after) { cursor kind } }", {}, () => {
      clearTimeout(riskTimer);
      riskTimer = setTimeout(() => loadRisk(), 300);
    }, (e) => clear(riskList).append(errorBox(e)));
    onLeave(() => { unsubColours(); unsubRisk(); clearTimeout(riskTimer); }, gen);
  }

  // --------------------------------------------------------------- auditor
  async function auditorPage() {
    main.append(h("h1", null, t("auditor.title")));
    const grid = h("div", { class: "grid two", id: "auditor" });
    main.append(grid);
    const status = h("div", { "aria-live": "polite" });
    const initial = new URLSearchParams(location.hash.split("?")[1] || "").get("person") || "";
    const form = h("form", { id: "audit-form" },
      field("audit-person", t("auditor.person_id"), h("input", { required: true, value: initial, autocomplete: "off", spellcheck: "false" })),
      field("audit-purpose", t("auditor.purpose"), h("input", { required: true, value: lang === "zh" ? "审计" : "audit" })),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "audit-go" }, t("auditor.load"))), status);
    const result = h("div", { class: "span2 grid two", id: "audit-result" });
    // A checkpoint's stream: its scan log, paged.
    const cpStatus = h("div", { "aria-live": "polite" });
    const cpForm = h("form", { id: "audit-checkpoint-form" },
      field("audit-checkpoint", t("auditor.checkpoint_id"), h("input", { required: true, autocomplete: "off", spellcheck: "false" })),
      h("div", { class: "actions" }, h("button", { type: "submit" }, t("auditor.load"))), cpStatus);
    submitting(cpForm, cpStatus, async () => {
      const id = cpForm.querySelector("#audit-checkpoint").value.trim();
      const d = await gql(`query($id: ID!) { checkpoint(id: $id) { id name place admission
          scans(limit: 500) { scanId codeId colour admitted reason temperature at position } } }`, { id });
      if (!d.checkpoint) throw new ApiError("NOT_FOUND", id);
      showCheckpoint(d.checkpoint);
      return "";
    });
    function showCheckpoint(cp) {
      clear(result);
      const scans = cp.scans;
      const pageSize = 10;
      let page = 0;
      const table = h("div", { class: "table-wrap" });
      const pager = h("div", { class: "pager" });
      function drawPage() {
        const n = Math.max(1, Math.ceil(scans.length / pageSize));
        clear(table).append(h("table", null,
          h("thead", null, h("tr", null, ["#", t("citizen.when"), "", "", t("auditor.code_id")].map((x) => h("th", null, x)))),
          h("tbody", null, scans.slice(page * pageSize, page * pageSize + pageSize).map((x) => h("tr", null,
            h("td", null, x.position), h("td", { class: "small" }, when(x.at)), h("td", null, pill(x.colour, colourName(x.colour))),
            h("td", { class: "small" }, (x.admitted ? t("checkpoint.admitted") : t("checkpoint.denied")) + " · " + x.reason +
              (x.temperature ? " · " + x.temperature + " °C" : "")),
            h("td", { class: "mono small" }, x.codeId))))));
        clear(pager).append(
          h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; drawPage(); } }, t("auditor.prev")),
          h("span", null, t("auditor.page", { p: page + 1, n })),
          h("button", { type: "button", class: "secondary", disabled: page >= n - 1, onclick: () => { page += 1; drawPage(); } }, t("auditor.next")));
      }
      drawPage();
      const c = card(t("auditor.checkpoint_scans", { name: cp.name }), h("p", { class: "small" }, h("span", { class: "mono" }, cp.id), " · ", placeName(cp.place)), table, pager);
      c.classList.add("span2");
      c.id = "checkpoint-scans";
      result.append(c);
    }
    // Any stream without personal data (risk areas, policies, checkpoints,
    // the catalogue), event by event as the log holds it.
    const streamStatus = h("div", { "aria-live": "polite" });
    const streamForm = h("form", { id: "audit-stream-form" },
      field("audit-stream", t("auditor.stream_name"), h("input", { required: true, autocomplete: "off", spellcheck: "false", placeholder: "riskarea-110106018" })),
      h("p", { class: "small muted" }, t("auditor.stream_help")),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "audit-stream-go" }, t("auditor.load"))), streamStatus);
    const starts = []; // `from` of each page shown, for Previous
    async function loadStream(stream, from) {
      const d = (await gql(`query($s: String!, $f: Int) { streamEvents(stream: $s, from: $f, limit: 20) {
          stream nextFrom events { revision position eventType recordedAt data } } }`, { s: stream, f: from })).streamEvents;
      showStream(d, from);
    }
    submitting(streamForm, streamStatus, async () => {
      starts.length = 0;
      await loadStream(streamForm.querySelector("#audit-stream").value.trim(), 0);
      return "";
    });
    function showStream(d, from) {
      clear(result);
      const rows = d.events.map((e) => h("tr", { "data-type": e.eventType },
        h("td", null, e.revision), h("td", null, e.position), h("td", { class: "small" }, when(e.recordedAt)),
        h("td", { class: "mono small" }, e.eventType),
        h("td", null, h("pre", { class: "json small" }, JSON.stringify(e.data, null, 1)))));
      const pager = h("div", { class: "pager" },
        h("button", { type: "button", class: "secondary", disabled: !starts.length, onclick: async () => {
          const prev = starts.pop();
          try { await loadStream(d.stream, prev); } catch (e) { clear(streamStatus).append(errorBox(e)); }
        } }, t("auditor.prev")),
        h("span", null, t("auditor.revisions", { a: from, b: from + Math.max(0, d.events.length - 1) })),
        h("button", { type: "button", class: "secondary", disabled: d.nextFrom === null || d.nextFrom === undefined, onclick: async () => {
          starts.push(from);
          try { await loadStream(d.stream, d.nextFrom); } catch (e) { starts.pop(); clear(streamStatus).append(errorBox(e)); }
        } }, t("auditor.next")));
      const c = card(t("auditor.stream_events", { name: d.stream }), h("div", { class: "table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, ["#", t("auditor.position"), t("citizen.when"), t("auditor.type"), t("auditor.data")].map((x) => h("th", null, x)))),
        h("tbody", null, rows))), pager);
      c.classList.add("span2");
      c.id = "stream-events";
      result.append(c);
    }
    const chainCard = card(t("auditor.chain"));
    chainCard.id = "chain";
    grid.append(card(t("auditor.pick"), form, h("h3", null, t("auditor.stream")), cpForm,
      h("h3", null, t("auditor.other_stream")), streamForm), chainCard, result);

    // The chain: the head, compared with the last look (the event at the old
    // head must still hash the same), and a full verification paged through
    // `verifyChain` with progress.
    let head = null;
    const VERIFY = `query($f: Int, $t: Int) { verifyChain(from: $f, to: $t) {
        from to eventsChecked intact brokenAt problem lastHash nextFrom until headPosition headHash } }`;
    async function loadHead() {
      clear(chainCard).append(h("h2", null, t("auditor.chain")), loading());
      try {
        const d = (await gql("{ logHead { position hash } }")).logHead;
        let same = null;
        if (d && head) {
          same = d.position >= head.position;
          if (same) same = (await gql(VERIFY, { f: head.position, t: head.position })).verifyChain.lastHash === head.hash;
        }
        clear(chainCard).append(h("h2", null, t("auditor.chain")));
        if (!d) { chainCard.append(h("p", { class: "muted" }, t("auditor.log_empty"))); return; }
        chainCard.append(h("p", { class: "mono", id: "chain-head" }, t("auditor.chain_head", { p: d.position, h: d.hash })));
        if (same !== null) chainCard.append(h("p", { class: same ? "ok" : "error", id: "chain-same" }, same ? t("auditor.chain_same") : t("auditor.chain_rewritten", { p: head.position })));
        head = d;
        const out = h("div", { id: "chain-verify-result", "aria-live": "polite" });
        const verifyButton = h("button", { type: "button", id: "chain-verify" }, t("auditor.chain_verify"));
        verifyButton.addEventListener("click", () => verifyAll(verifyButton, out));
        chainCard.append(h("p", { class: "small muted" }, t("auditor.chain_help")),
          h("div", { class: "actions" }, verifyButton,
            h("button", { type: "button", class: "secondary", id: "chain-check", onclick: loadHead }, t("auditor.chain_check"))), out);
      } catch (e) { clear(chainCard).append(h("h2", null, t("auditor.chain")), errorBox(e, loadHead)); }
    }
    // Verifies from the first event to the head as it is now, page by page.
    async function verifyAll(button, out) {
      button.disabled = true;
      let stopped = false;
      onLeave(() => { stopped = true; });
      const bar = h("progress", { id: "chain-progress", max: "1", value: "0" });
      const said = h("span", { class: "small" }, t("auditor.chain_verifying", { n: 0, total: "…" }));
      clear(out).append(h("div", { class: "progress-line" }, bar, said));
      try {
        let from = 0, until = null, checked = 0, v = null;
        do {
          v = (await gql(VERIFY, { f: from, t: until })).verifyChain;
          if (stopped) return;
          if (v.to === null) { clear(out).append(h("p", { class: "muted" }, t("auditor.log_empty"))); return; }
          until = v.until;
          checked += v.eventsChecked;
          const total = until + 1;
          bar.max = total; bar.value = v.intact ? v.to + 1 : checked;
          said.textContent = t("auditor.chain_verifying", { n: (v.to + 1).toLocaleString(), total: total.toLocaleString() });
          from = v.nextFrom;
        } while (v.intact && v.nextFrom !== null);
        const atHead = v.to === v.headPosition;
        const result = !v.intact
          ? h("div", { class: "error", role: "alert", id: "chain-result", "data-intact": "false", "data-broken-at": v.brokenAt },
            h("p", { class: "plain" }, t("auditor.chain_broken", { p: v.brokenAt })),
            h("p", { class: "small" }, t("auditor.chain_broken_detail", { n: checked, problem: v.problem || "" })))
          : h("div", { class: "ok", role: "status", id: "chain-result", "data-intact": "true", "data-events": checked },
            h("p", { class: "plain" }, t("auditor.chain_intact", { n: checked.toLocaleString(), to: v.to })),
            h("p", { class: "small mono" }, t(atHead && v.lastHash === v.headHash ? "auditor.chain_intact_head" : "auditor.chain_intact_last", { h: v.lastHash })));
        clear(out).append(h("div", { class: "progress-line" }, bar, said), result);
      } catch (e) {
        clear(out).append(errorBox(e, () => verifyAll(button, out)));
      } finally {
        button.disabled = false;
      }
    }

    submitting(form, status, async () => {
      const id = form.querySelector("#audit-person").value.trim();
      const purpose = form.querySelector("#audit-purpose").value.trim();
      const d = await gql(`query($id: ID!, $p: String!) { person(id: $id, purpose: $p) {
          id homeRegion residence colour { region colour reason ruleId policy since }
          travelHistory(days: 14) { date county name source } history } }`, { id, p: purpose });
      showPerson(d.person);
      return "";
    });

    function showPerson(p) {
      clear(result);
      if (!p) { result.append(errorBox(new ApiError("NOT_FOUND", ""))); return; }
      const history = p.history || [];
      const now = currentColour(p);
      const asofOut = h("div", { id: "asof-result" });
      const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      const asofInput = h("input", { type: "datetime-local", value: local(new Date()), step: "1" });
      const asofForm = h("form", { id: "asof-form" }, h("div", { class: "row" },
        field("asof", t("auditor.asof"), asofInput), h("button", { type: "submit" }, t("auditor.asof_go"))), asofOut);
      asofForm.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const at = new Date(asofInput.value);
        const c = colourAsOf(history, at, p.colour && p.colour.region);
        clear(asofOut).append(c ? explanation(c, history, at) : h("p", { class: "muted" }, t("auditor.asof_none")));
      });
      const explainCard = card(t("auditor.current"), h("p", { class: "small" }, h("span", { class: "mono" }, p.id), " · ", placeName(p.residence)),
        h("div", { id: "audit-explanation" }, explanation(now, history)), asofForm);

      const pageSize = 10;
      let page = Math.max(0, Math.ceil(history.length / pageSize) - 1);
      const table = h("div", { class: "table-wrap" });
      const pager = h("div", { class: "pager" });
      function summary(ev) {
        if (ev.type === "ColourChanged.v1") return h("span", null, pill(ev.colour, colourName(ev.colour)), " " + ev.reason + " · " + ev.rule_id + " · " + (ev.cause && ev.cause.kind));
        if (ev.type === "EvidenceRecorded.v1") return h("ul", { class: "evidence" }, describeEvidence(ev));
        const copy = Object.assign({}, ev); delete copy.type; delete copy.person_id;
        return h("span", { class: "mono small" }, JSON.stringify(copy).slice(0, 160));
      }
      function drawPage() {
        const n = Math.max(1, Math.ceil(history.length / pageSize));
        const rows = history.slice(page * pageSize, page * pageSize + pageSize);
        clear(table).append(h("table", null,
          h("thead", null, h("tr", null, h("th", null, "#"), h("th", null, t("citizen.when")), h("th", null, t("auditor.type")), h("th", null, ""))),
          h("tbody", null, rows.map((ev, i) => h("tr", null, h("td", null, page * pageSize + i + 1),
            h("td", { class: "small" }, when(ev.at || ev.issued_at || (ev.meta && ev.meta.occurred_at))), h("td", { class: "small" }, ev.type), h("td", null, summary(ev)))))));
        clear(pager).append(
          h("button", { type: "button", class: "secondary", disabled: page === 0, onclick: () => { page -= 1; drawPage(); } }, t("auditor.prev")),
          h("span", null, t("auditor.page", { p: page + 1, n })),
          h("button", { type: "button", class: "secondary", disabled: page >= n - 1, onclick: () => { page += 1; drawPage(); } }, t("auditor.next")));
      }
      drawPage();
      const historyCard = card(t("auditor.history"), table, pager);
      historyCard.classList.add("span2");
      result.append(explainCard, historyCard);
    }
    await loadHead();
    if (initial) form.requestSubmit();
  }

  // ------------------------------------------------------- other domains
  // Pages of other government services live in their own files (loaded after
  // this one, before the first render) and register here: the same sign-in,
  // navigation, API client, live connection and text as every page.
  window.TongbanPortal = {
    // `roles`: who may open the page; `home`: roles whose start page it is.
    register(page, { roles, home, render: fn, text }) {
      PAGE_ROLES[page] = roles;
      PAGES[page] = fn;
      for (const r of home || []) ROLE_PAGE[r] = page;
      if (text) Object.assign(TEXT, text);
    },
    h, clear, card, field, pill, loading, errorBox, submitting, t, when, colourName, roleName,
    gql, live, onLeave, ApiError,
    me() { return me; },
    lang() { return lang; },
  };

  // ------------------------------------------------------------------ boot
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("tongban.lang", lang);
    render();
  });
  document.getElementById("signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => { render(); main.focus({ preventScroll: true }); });
  // An expiring token is noticed without waiting for the next request.
  setInterval(() => { if (token && expired() && banner.hidden) showAuthProblem(t("err.expired")); }, 5000);
  // Deferred scripts run while readyState is "interactive", before
  // DOMContentLoaded: wait for it so that every page file has registered.
  if (document.readyState === "complete") render();
  else document.addEventListener("DOMContentLoaded", render, { once: true });
})();
