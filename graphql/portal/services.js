// Tongban portal: government services beside the health code.
//  - `services` (citizens, enterprises): search the catalogue, apply with a
//    form drawn from the service's JSON Schema (the server's violations shown
//    next to their fields), track applications (history, due date, answer a
//    request for more information, withdraw) and the inbox, live.
//  - `queue` (department officials): the department's open applications in
//    the official's region; open one (saying why), accept, ask for more
//    information, approve or reject with reasons; for a work-resumption
//    permit, the share of the enterprise's registered employees holding a
//    green code (counts only).
// Hand-written, no build step; uses only window.TongbanPortal (app.js) and
// the public GraphQL API.
"use strict";
(function () {
  const P = window.TongbanPortal;
  if (!P) return;
  const { h, clear, card, field, pill, loading, errorBox, submitting, t, when, gql, live, onLeave, ApiError } = P;

  // ---------------------------------------------------------------- text
  const TEXT = {
    "nav.services": ["办事服务", "My services"],
    "nav.queue": ["审批工作台", "Applications queue"],
    "role.enterprise": ["企业", "enterprise"],

    "services.title": ["办事服务", "My services"],
    "services.search": ["查找服务", "Find a service"],
    "services.keyword": ["关键词", "Keyword"],
    "services.keyword_ph": ["如：养老、复工", "e.g. elderly, work"],
    "services.region": ["办理地区（行政区划代码）", "Region (division code)"],
    "services.region_ph": ["如：110106", "e.g. 110106"],
    "services.search_go": ["搜索", "Search"],
    "services.none_found": ["没有找到符合条件的服务。", "No service matches."],
    "services.found": ["找到 {n} 项服务", "{n} services found"],
    "services.open": ["查看并申请", "View and apply"],
    "services.department": ["承办部门", "Department"],
    "services.days": ["承诺时限：{n} 天", "Processing time: {n} days"],
    "services.documents": ["所需材料", "Documents to provide"],
    "services.offered": ["服务地区", "Offered in"],
    "services.back": ["← 返回", "← Back"],
    "services.apply": ["填写申请", "Application form"],
    "services.apply_region": ["申请地区（区县或街道代码）", "Where you apply (county or street code)"],
    "services.required_note": ["带 * 的为必填项。", "Fields marked * are required."],
    "services.required": ["必填", "required"],
    "services.choose": ["请选择", "Choose"],
    "services.lines": ["每行一项", "One per line"],
    "services.submit": ["提交申请", "Submit application"],
    "services.fix": ["有 {n} 处需要修改，请查看标红的项目。", "{n} fields need attention; see the marked fields."],
    "services.submitted": ["申请已提交。", "Application submitted."],
    "services.mine": ["我的申请", "My applications"],
    "services.no_apps": ["您还没有提交过申请。", "You have not applied for anything yet."],
    "services.submitted_at": ["提交于 {t}", "submitted {t}"],
    "services.due": ["办结期限 {t}", "due {t}"],
    "services.overdue": ["已超期", "overdue"],
    "services.detail": ["申请详情", "Application"],
    "services.history": ["办理进度", "Status history"],
    "services.form_now": ["申请内容", "What you submitted"],
    "services.access": ["查阅记录", "Who opened it"],
    "services.no_access": ["尚无工作人员查阅。", "No official has opened it yet."],
    "services.requested": ["工作人员要求补充：{r}", "The official asks for: {r}"],
    "services.supplement": ["补充材料", "Supply more information"],
    "services.supplement_note": ["补充说明", "What you changed"],
    "services.supplement_go": ["提交补充", "Send"],
    "services.supplemented": ["已提交补充材料。", "Sent."],
    "services.withdraw": ["撤回申请", "Withdraw the application"],
    "services.withdraw_reason": ["撤回原因（可不填）", "Why (optional)"],
    "services.withdraw_go": ["确认撤回", "Withdraw"],
    "services.withdrawn": ["申请已撤回。", "Application withdrawn."],
    "services.inbox": ["消息", "Inbox"],
    "services.unread": ["{n} 条未读", "{n} unread"],
    "services.no_inbox": ["暂无消息。", "No messages."],
    "services.read_all": ["全部标为已读", "Mark all read"],
    "services.new_note": ["新消息：{t}", "New message: {t}"],
    "services.official": ["经办人", "official"],
    "services.residence": ["户籍变更：{s}", "Residence change: {s}"],

    "status.submitted": ["已提交", "submitted"],
    "status.under_review": ["审查中", "under review"],
    "status.awaiting_information": ["待补充材料", "awaiting more information"],
    "status.approved": ["已批准", "approved"],
    "status.rejected": ["未予批准", "rejected"],
    "status.withdrawn": ["已撤回", "withdrawn"],
    "step.submit": ["提交申请", "Submitted"],
    "step.accept": ["受理", "Accepted for review"],
    "step.request_more_information": ["要求补充材料", "More information requested"],
    "step.supplement": ["补充材料", "Information supplied"],
    "step.approve": ["批准", "Approved"],
    "step.reject": ["不予批准", "Rejected"],
    "step.withdraw": ["撤回", "Withdrawn"],

    "svc.work-resumption-permit": ["企业复工复产许可", "Enterprise work-resumption permit"],
    "svc.elderly-care-subsidy": ["养老服务补贴", "Elderly-care subsidy"],
    "svc.residence-community-change": ["居住社区变更", "Change of residence community"],
    "dept.civil-affairs": ["民政局", "Civil affairs"],
    "dept.commerce": ["商务局", "Commerce"],
    "dept.public-security": ["公安局", "Public security"],

    "field.age": ["年龄", "Age"],
    "field.careLevel": ["照护等级", "Care level"],
    "field.monthlyIncome": ["月收入（元）", "Monthly income (yuan)"],
    "field.livesAlone": ["独居", "Lives alone"],
    "field.bankAccount": ["银行账号", "Bank account"],
    "field.enterpriseName": ["企业名称", "Enterprise name"],
    "field.creditCode": ["统一社会信用代码", "Unified social credit code"],
    "field.registeredEmployees": ["登记职工人数", "Registered employees"],
    "field.siteAddress": ["生产经营地址", "Site address"],
    "field.resumeOn": ["拟复工日期", "Resume on"],
    "field.preventionMeasures": ["防疫措施", "Prevention measures"],
    "field.newCommunity": ["新居住社区（12 位代码）", "New community (12-digit code)"],
    "field.moveDate": ["迁入日期", "Move date"],
    "field.address": ["详细地址", "Address"],
    "enum.self-care": ["能自理", "self-care"],
    "enum.partial-care": ["半失能", "partial care"],
    "enum.full-care": ["失能", "full care"],
    "yes": ["是", "yes"],
    "no": ["否", "no"],

    "rule.required": ["此项为必填项。", "This field is required."],
    "rule.minimum": ["数值过小。", "The value is too small."],
    "rule.maximum": ["数值过大。", "The value is too large."],
    "rule.exclusiveMinimum": ["数值过小。", "The value is too small."],
    "rule.exclusiveMaximum": ["数值过大。", "The value is too large."],
    "rule.pattern": ["格式不正确。", "The format is not right."],
    "rule.minLength": ["内容过短。", "Too short."],
    "rule.maxLength": ["内容过长。", "Too long."],
    "rule.minItems": ["至少填写一项。", "Give at least one."],
    "rule.enum": ["请选择一个选项。", "Choose one of the options."],
    "rule.type": ["类型不正确。", "Not the right kind of value."],
    "rule.format": ["格式不正确。", "The format is not right."],
    "rule.division": ["不是有效的行政区划代码。", "Not a valid division code."],
    "rule.region": ["请填写该服务覆盖的区县或街道代码。", "Give a county or street code where the service is offered."],

    "queue.title": ["审批工作台", "Applications queue"],
    "queue.lead": ["本部门在您辖区内待办的申请，按办结期限排序。", "Your department's open applications in your region, soonest due first."],
    "queue.empty": ["没有待办的申请。", "No open applications."],
    "queue.refresh": ["刷新", "Refresh"],
    "queue.open": ["办理", "Open"],
    "queue.applicant": ["申请人", "Applicant"],
    "queue.applicant.person": ["个人", "person"],
    "queue.applicant.enterprise": ["企业", "enterprise"],
    "queue.purpose": ["查阅目的（申请人可见）", "Why you open it (the applicant sees this)"],
    "queue.purpose_default": ["审查申请", "Review of the application"],
    "queue.open_go": ["打开申请", "Open the application"],
    "queue.accept": ["受理", "Accept for review"],
    "queue.request": ["要求补充材料", "Request more information"],
    "queue.requested_what": ["需要补充什么", "What is needed"],
    "queue.approve": ["批准", "Approve"],
    "queue.reject": ["不予批准", "Reject"],
    "queue.reasons": ["理由（每行一条，申请人可见）", "Reasons (one per line; the applicant sees them)"],
    "queue.done": ["已办理：{s}", "Done: {s}"],
    "queue.waiting": ["等待申请人补充材料。", "Waiting for the applicant to supply more information."],
    "queue.closed": ["该申请已办结。", "This application is closed."],
    "queue.workforce": ["职工健康码", "Workforce health codes"],
    "queue.workforce_lead": ["仅显示人数，不显示任何职工身份。", "Counts only; no employee is identified."],
    "queue.green_share": ["{g} / {n} 名登记职工持绿码（{p}）", "{g} of {n} registered employees hold a green code ({p})"],
    "queue.no_employees": ["该企业没有登记职工。", "The enterprise has no registered employees."],
    "queue.counts": ["绿码 {g} · 黄码 {y} · 红码 {r} · 无码 {u}", "green {g} · yellow {y} · red {r} · no code {u}"],
    "queue.actions": ["办理", "Decide"],
    "queue.form": ["申请内容", "The application form"],
  };
  const tx = (key, fallback, vars) => (TEXT[key] || (window.TONGBAN_TEXT || {})[key] ? t(key, vars) : fallback);

  // A few styles of these pages only (app.css stays the portal's own).
  if (!document.getElementById("services-style")) {
    document.head.append(h("style", { id: "services-style" }, `
      .req { color: var(--red); margin-left: .15rem; text-decoration: none; }
      .field-error { color: var(--red); font-size: .875rem; margin: .25rem 0 0; }
      [aria-invalid="true"] { border-color: var(--red); box-shadow: 0 0 0 1px var(--red); }
      ul.svc-items, ul.app-items, ul.inbox-items, ol.app-history { list-style: none; margin: 0; padding: 0; }
      ul.svc-items li, ul.app-items li, ul.inbox-items li, ol.app-history li { border-top: 1px solid var(--line); padding: .6rem 0; }
      ul.inbox-items li.unread { font-weight: 600; }
      .badge { display: inline-block; min-width: 1.5rem; padding: 0 .45rem; border-radius: 999px; background: var(--red);
        color: #fff; font-size: .8rem; text-align: center; margin-left: .4rem; vertical-align: .1rem; }
      .badge.zero { background: var(--line); color: var(--muted); }
      .check-row { display: flex; gap: .5rem; align-items: center; }
      .check-row input { width: auto; }
      dl.form-view { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 3fr); gap: .25rem .75rem; margin: 0; }
      dl.form-view dt { color: var(--muted); } dl.form-view dd { margin: 0; word-break: break-word; }
      .share { height: 1rem; border-radius: .25rem; background: var(--wash); overflow: hidden; display: flex; }
      .share .g { background: var(--green); } .share .y { background: var(--yellow-qr); } .share .r { background: var(--red); }
      .pill.neutral { background: var(--wash); color: var(--muted); }
      h2[tabindex="-1"]:focus { outline: none; }
    `));
  }

  // ------------------------------------------------------------- helpers
  const STATUS_PILL = { approved: "green", rejected: "red", awaiting_information: "yellow", under_review: "medium", submitted: "medium", withdrawn: "neutral" };
  function statusPill(s) { return pill(STATUS_PILL[s] || "neutral", tx("status." + s, s)); }
  function serviceName(code, name) { return tx("svc." + code, name || code); }
  function deptName(code) { return tx("dept." + code, code); }
  function fieldLabel(name, schema) { return tx("field." + name, (schema && schema.title) || name); }
  function query() { return new URLSearchParams(location.hash.split("?")[1] || ""); }
  function go(params) {
    const q = new URLSearchParams(params).toString();
    location.hash = "#/" + (location.hash.replace(/^#\/?/, "").split("?")[0]) + (q ? "?" + q : "");
  }
  // Log position of the last write, so the next page waits for it.
  let pendingPosition = null;
  function takePosition() { const p = pendingPosition; pendingPosition = null; return p; }
  // DOM append() would print arrays and nulls: flatten and drop them.
  function kids(...xs) { return xs.flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false); }
  function lines(text) { return String(text || "").split(/\r?\n/).map((s) => s.trim()).filter(Boolean); }
  function focusHeading(el) { if (el) { el.setAttribute("tabindex", "-1"); el.focus({ preventScroll: false }); } }

  // The server's form violations: `extensions.violations` (field a JSON
  // pointer), or else read from the message, which names each one as
  // "`/field` breaks `rule`: message".
  function violations(e) {
    const listed = e && e.extensions && e.extensions.violations;
    if (Array.isArray(listed) && listed.length) {
      return listed.map((v) => ({ field: String(v.field || "").split("/")[1] || "", rule: v.rule, message: v.message }));
    }
    const msg = (e && e.message) || "";
    const re = /`(\/[^`]*|)` breaks `([^`]+)`: /g;
    const found = [];
    let m;
    while ((m = re.exec(msg))) found.push({ at: m.index, end: re.lastIndex, field: m[1], rule: m[2] });
    return found.map((v, i) => ({
      field: v.field.split("/")[1] || "",
      rule: v.rule,
      message: msg.slice(v.end, i + 1 < found.length ? found[i + 1].at : msg.length).replace(/;\s*$/, "").trim(),
    }));
  }

  // Catalogue entries by code, for names in lists.
  const catalogue = new Map();
  async function loadService(code) {
    if (catalogue.has(code)) return catalogue.get(code);
    const d = await gql(`query($c: String!) { catalogueService(code: $c) {
        code name department description requiredDocuments eligibleRegions formSchema processingDays status } }`, { c: code });
    if (!d.catalogueService) throw new ApiError("NOT_FOUND", code);
    catalogue.set(code, d.catalogueService);
    return d.catalogueService;
  }

  // -------------------------------------------------- the schema's form
  // Draws the fields of a JSON Schema (`type: object`): text, number,
  // integer, date (`format: date`), enum, boolean and lists of text.
  // Returns {element, values(), show(violations), clearErrors()}.
  function schemaForm(schema, prefix, initial) {
    const props = (schema && schema.properties) || {};
    const required = new Set((schema && schema.required) || []);
    const fields = new Map();
    const box = h("div", { class: "schema-fields" });
    for (const [name, s] of Object.entries(props)) {
      const id = prefix + "-" + name;
      const errId = id + "-error";
      const value = initial ? initial[name] : undefined;
      const req = required.has(name);
      const label = h("label", { for: id }, fieldLabel(name, s),
        req ? h("abbr", { class: "req", title: t("services.required"), "aria-hidden": "true" }, "*") : null);
      const error = h("p", { class: "field-error", id: errId, hidden: true });
      let input;
      let kind;
      const type = Array.isArray(s.type) ? s.type.find((x) => x !== "null") : s.type;
      if (Array.isArray(s.enum)) {
        kind = "enum";
        input = h("select", { id, name },
          h("option", { value: "" }, t("services.choose")),
          s.enum.map((v) => h("option", { value: String(v), selected: value !== undefined && String(value) === String(v) }, tx("enum." + v, String(v)))));
      } else if (type === "boolean") {
        kind = "boolean";
        input = h("input", { id, name, type: "checkbox", checked: value === true });
      } else if (type === "integer" || type === "number") {
        kind = type;
        input = h("input", { id, name, type: "number", inputmode: type === "integer" ? "numeric" : "decimal",
          step: type === "integer" ? "1" : "any", value: value !== undefined ? String(value) : null });
      } else if (type === "array") {
        kind = "array";
        input = h("textarea", { id, name, rows: "3", placeholder: t("services.lines") });
        if (Array.isArray(value)) input.value = value.join("\n");
      } else if (type === "string" && s.format === "date") {
        kind = "date";
        input = h("input", { id, name, type: "date", value: value || null });
      } else {
        kind = "string";
        const numeric = typeof s.pattern === "string" && /^\^\[0-9\]/.test(s.pattern);
        input = h("input", { id, name, type: "text", autocomplete: "off", spellcheck: "false",
          inputmode: numeric ? "numeric" : null, maxlength: s.maxLength || null, value: value !== undefined ? String(value) : null });
      }
      if (req) input.setAttribute("aria-required", "true");
      input.setAttribute("aria-describedby", errId);
      const wrap = kind === "boolean"
        ? h("div", { "data-field": name }, h("div", { class: "check-row" }, input, label), error)
        : h("div", { "data-field": name }, label, input, error);
      box.append(wrap);
      fields.set(name, { input, error, kind, options: s.enum });
    }
    const general = h("div", { class: "field-error", role: "alert", hidden: true });
    box.prepend(general);
    function values() {
      const out = {};
      for (const [name, f] of fields) {
        const raw = f.input.value;
        switch (f.kind) {
          case "boolean": out[name] = f.input.checked; break;
          case "enum": if (raw !== "") { const v = f.options.find((o) => String(o) === raw); out[name] = v === undefined ? raw : v; } break;
          case "integer": case "number": if (raw.trim() !== "") out[name] = Number(raw); break;
          case "array": { const l = lines(raw); if (l.length) out[name] = l; break; }
          default: if (raw.trim() !== "") out[name] = raw.trim();
        }
      }
      return out;
    }
    function clearErrors() {
      general.hidden = true; clear(general);
      for (const f of fields.values()) { f.error.hidden = true; clear(f.error); f.input.removeAttribute("aria-invalid"); }
    }
    // Puts each violation next to its field; returns how many were shown.
    function show(list) {
      clearErrors();
      let first = null;
      const loose = [];
      for (const v of list) {
        const f = fields.get(v.field);
        if (!f) { loose.push(v.message); continue; }
        const text = TEXT["rule." + v.rule] ? t("rule." + v.rule) : v.message;
        f.error.append(h("span", null, text + " "), h("span", { class: "muted small" }, v.message));
        f.error.hidden = false;
        f.input.setAttribute("aria-invalid", "true");
        f.error.dataset.rule = v.rule;
        if (!first) first = f.input;
      }
      if (loose.length) { general.hidden = false; general.append(loose.join("; ")); }
      if (first) first.focus();
      return list.length;
    }
    return { element: box, values, show, clearErrors };
  }

  // Shows a form error: violations next to their fields and a summary,
  // anything else in the status line.
  function formFailure(e, form, status, regionField) {
    if (e && e.code === "INVALID_INPUT") {
      const list = violations(e);
      if (regionField && /`region`|not offered in/.test(e.message || "")) {
        list.push({ field: "\u0000region", rule: /not offered in/.test(e.message) ? "region" : "division", message: e.message });
      }
      if (list.length) {
        form.show(list.filter((v) => v.field !== "\u0000region"));
        if (regionField) regionField.show(list.filter((v) => v.field === "\u0000region"));
        clear(status).append(h("div", { class: "error", role: "alert", id: "form-summary" }, t("services.fix", { n: list.length })));
        return;
      }
    }
    clear(status).append(errorBox(e));
  }

  // A single extra field (the region) with the same error display.
  function plainField(id, label, input, required) {
    const error = h("p", { class: "field-error", id: id + "-error", hidden: true });
    input.id = id;
    input.setAttribute("aria-describedby", id + "-error");
    if (required) input.setAttribute("aria-required", "true");
    const el = h("div", null, h("label", { for: id }, label,
      required ? h("abbr", { class: "req", title: t("services.required"), "aria-hidden": "true" }, "*") : null), input, error);
    return {
      element: el, input,
      show(list) {
        clear(error); error.hidden = !list.length; input.removeAttribute("aria-invalid");
        for (const v of list) { error.append(h("span", null, t("rule." + v.rule) + " "), h("span", { class: "muted small" }, v.message)); }
        if (list.length) { input.setAttribute("aria-invalid", "true"); error.dataset.rule = list[0].rule; input.focus(); }
      },
    };
  }

  function formView(form) {
    const entries = Object.entries(form || {});
    if (!entries.length) return h("p", { class: "muted" }, "—");
    return h("dl", { class: "form-view" }, entries.flatMap(([k, v]) => [
      h("dt", null, fieldLabel(k)),
      h("dd", { "data-field": k }, Array.isArray(v) ? v.join("; ") : typeof v === "boolean" ? t(v ? "yes" : "no") : tx("enum." + v, String(v))),
    ]));
  }

  function historyList(history) {
    return h("ol", { class: "app-history", id: "app-history" }, (history || []).map((s) => h("li", { "data-step": s.step },
      h("div", null, h("strong", null, tx("step." + s.step, s.step)), " ", statusPill(s.status),
        h("span", { class: "muted small" }, " · " + when(s.at))),
      s.reasons.length ? h("ul", { class: "small" }, s.reasons.map((r) => h("li", null, r))) : null,
      s.official ? h("div", { class: "mono muted small" }, t("services.official") + " " + s.official) : null)));
  }

  const APP_FIELDS = "id service department region applicantKind status submittedAt dueAt overdue";

  // ================================================== citizens, enterprises
  async function servicesPage(gen) {
    let alive = true;
    onLeave(() => { alive = false; }, gen);
    const main = document.getElementById("main");
    const q = query();
    main.append(h("h1", null, t("services.title")));
    const grid = h("div", { class: "grid two", id: "services" });
    main.append(grid);

    // --- inbox (every view of the page)
    const unread = h("span", { class: "badge zero", id: "inbox-unread", "aria-live": "polite" }, "0");
    const inboxList = h("div", { id: "inbox-list" }, loading());
    const inboxStatus = h("div", { "aria-live": "polite" });
    const inboxCard = h("section", { class: "card", id: "inbox" },
      h("h2", null, t("services.inbox"), unread),
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "inbox-read-all", onclick: async () => {
        clear(inboxStatus).append(h("span", { class: "loading" }, t("saving")));
        try {
          const r = (await gql("mutation { markInboxRead { position } }")).markInboxRead;
          clear(inboxStatus);
          await loadInbox(r.position);
        } catch (e) { clear(inboxStatus).append(errorBox(e)); }
      } }, t("services.read_all"))), inboxStatus, inboxList);
    let notes = [];
    function drawInbox() {
      const n = notes.filter((x) => !x.read).length;
      unread.textContent = String(n);
      unread.className = "badge" + (n ? "" : " zero");
      unread.setAttribute("aria-label", t("services.unread", { n }));
      clear(inboxList);
      if (!notes.length) { inboxList.append(h("p", { class: "muted" }, t("services.no_inbox"))); return; }
      inboxList.append(h("ul", { class: "inbox-items" }, notes.slice(0, 20).map((x) => h("li", { class: x.read ? "" : "unread", "data-kind": x.kind, "data-id": x.id },
        h("div", null, x.title, h("span", { class: "muted small" }, " · " + when(x.at))),
        h("div", { class: "small" }, x.body),
        x.applicationId ? h("a", { href: "#/services?application=" + encodeURIComponent(x.applicationId), class: "small" }, t("services.detail")) : null))));
    }
    async function loadInbox(pos) {
      try {
        const d = await gql(`query($pos: Int) { inbox(minPosition: $pos) { id kind title body applicationId read at } unreadCount(minPosition: $pos) }`, { pos: pos || null });
        if (!alive) return;
        notes = d.inbox;
        drawInbox();
      } catch (e) { if (alive) clear(inboxList).append(errorBox(e, () => loadInbox())); }
    }

    // --- my applications
    const appsList = h("div", { id: "my-apps" }, loading());
    const appsCard = h("section", { class: "card", id: "my-applications" }, h("h2", null, t("services.mine")), appsList);
    async function loadApps(pos) {
      try {
        const d = await gql(`query($pos: Int) { myApplications(minPosition: $pos) { ${APP_FIELDS} } }`, { pos: pos || null });
        if (!alive) return;
        clear(appsList);
        if (!d.myApplications.length) { appsList.append(h("p", { class: "muted" }, t("services.no_apps"))); return; }
        appsList.append(h("ul", { class: "app-items" }, d.myApplications.map((a) => h("li", { "data-application": a.id, "data-status": a.status },
          h("div", null, h("a", { href: "#/services?application=" + encodeURIComponent(a.id) }, serviceName(a.service)), " ", statusPill(a.status),
            a.overdue ? [" ", pill("red", t("services.overdue"))] : null),
          h("div", { class: "muted small" }, t("services.submitted_at", { t: when(a.submittedAt) }) + " · " + t("services.due", { t: when(a.dueAt) }))))));
      } catch (e) { if (alive) clear(appsList).append(errorBox(e, () => loadApps())); }
    }

    const view = h("div", { class: "span2 grid two", id: "services-view" });
    grid.append(view, appsCard, inboxCard);
    const pos = takePosition();

    // Live: new notifications (status changes of one's applications). The
    // feed starts with the inbox's history: what is already listed is skipped.
    let reloadTimer = null;
    const listen = () => { const unsubscribe = live.subscribe(
      "subscription($after: String) { inboxUpdates(after: $after) { cursor notification { id kind title body applicationId read at } } }", {},
      (item) => {
        const n = item && item.notification;
        if (!n || !alive || notes.some((x) => x.id === n.id)) return;
        notes.unshift(n);
        drawInbox();
        const flash = document.getElementById("services-notice");
        if (flash) { clear(flash).append(h("div", { class: "ok" }, t("services.new_note", { t: n.title }))); }
        // The cursor is "<log position>.<n>": read the applications at
        // least as new as the notification.
        const at = parseInt(String(item.cursor || ""), 10) || null;
        clearTimeout(reloadTimer);
        reloadTimer = setTimeout(() => {
          loadApps(at);
          if (n.applicationId && n.applicationId === query().get("application") && reloadDetail) reloadDetail(at);
        }, 200);
      },
      (e) => { if (alive) clear(inboxList).append(errorBox(e, () => loadInbox())); });
    onLeave(() => { unsubscribe(); clearTimeout(reloadTimer); }, gen); };
    main.insertBefore(h("div", { id: "services-notice", role: "status", "aria-live": "polite" }), grid);

    const application = q.get("application");
    const service = q.get("service");
    const isAlive = () => alive;
    const reloadDetail = application ? (p) => applicationView(view, application, p, isAlive, loadApps, true) : null;
    const first = application ? applicationView(view, application, pos, isAlive, loadApps, false)
      : service ? serviceView(view, service, q.get("region") || "", isAlive)
        : searchView(view, q.get("keyword") || "", q.get("region") || "", isAlive);
    await Promise.all([first, loadApps(pos), loadInbox(pos)]);
    if (!alive) return;
    listen();
  }

  // --- search
  async function searchView(view, keyword, region, isAlive) {
    const results = h("div", { id: "svc-results", "aria-live": "polite" });
    const status = h("div", { "aria-live": "polite" });
    const kw = h("input", { type: "search", value: keyword, placeholder: t("services.keyword_ph"), autocomplete: "off" });
    const rg = h("input", { type: "text", inputmode: "numeric", value: region, placeholder: t("services.region_ph"), autocomplete: "off" });
    const form = h("form", { id: "svc-search", role: "search" },
      h("div", { class: "row" }, field("svc-keyword", t("services.keyword"), kw), field("svc-region", t("services.region"), rg),
        h("button", { type: "submit", id: "svc-search-go" }, t("services.search_go"))), status);
    const c = card(t("services.search"), form, results);
    c.classList.add("span2");
    view.append(c);
    async function search() {
      const d = await gql(`query($k: String, $r: String) { catalogue(keyword: $k, region: $r) {
          code name department description requiredDocuments eligibleRegions formSchema processingDays status } }`,
      { k: kw.value.trim() || null, r: rg.value.trim() || null });
      if (!isAlive()) return "";
      for (const s of d.catalogue) catalogue.set(s.code, s);
      clear(results);
      // What these results answer (a new search replaces them).
      results.dataset.keyword = kw.value.trim();
      results.dataset.region = rg.value.trim();
      if (!d.catalogue.length) { results.append(h("p", { class: "muted", id: "svc-none" }, t("services.none_found"))); return ""; }
      results.append(h("p", { class: "muted small" }, t("services.found", { n: d.catalogue.length })),
        h("ul", { class: "svc-items" }, d.catalogue.map((s) => {
          const params = new URLSearchParams({ service: s.code });
          if (rg.value.trim()) params.set("region", rg.value.trim());
          return h("li", { "data-service": s.code },
            h("h3", null, serviceName(s.code, s.name)),
            h("p", { class: "small" }, s.description),
            h("p", { class: "muted small" }, t("services.department") + ": " + deptName(s.department) + " · " + t("services.days", { n: s.processingDays })),
            h("a", { href: "#/services?" + params.toString(), class: "svc-open", "data-service": s.code }, t("services.open")));
        })));
      return "";
    }
    submitting(form, status, search);
    clear(results).append(loading());
    try { await search(); } catch (e) { if (isAlive()) clear(results).append(errorBox(e, () => form.requestSubmit())); }
  }

  // --- one service and its application form
  async function serviceView(view, code, region, isAlive) {
    const box = h("section", { class: "card span2", id: "service-detail" }, loading());
    view.append(box);
    let s;
    try { s = await loadService(code); } catch (e) {
      if (isAlive()) clear(box).append(h("a", { href: "#/services" }, t("services.back")), errorBox(e, () => { box.remove(); serviceView(view, code, region, isAlive); }));
      return;
    }
    if (!isAlive()) return;
    const heading = h("h2", null, serviceName(s.code, s.name));
    clear(box).append(...kids(
      h("a", { href: "#/services", id: "svc-back" }, t("services.back")),
      heading,
      h("p", null, s.description),
      h("p", { class: "muted small" }, t("services.department") + ": " + deptName(s.department) + " · " + t("services.days", { n: s.processingDays })),
      s.requiredDocuments.length ? [h("h3", null, t("services.documents")), h("ul", { class: "small" }, s.requiredDocuments.map((d) => h("li", null, d)))] : null,
      h("p", { class: "muted small" }, t("services.offered") + ": " + s.eligibleRegions.join(", "))));

    const remembered = region || localStorage.getItem("tongban.services.region") || "";
    const regionField = plainField("apply-region", t("services.apply_region"),
      h("input", { type: "text", inputmode: "numeric", value: remembered, placeholder: t("services.region_ph"), autocomplete: "off" }), true);
    const fields = schemaForm(s.formSchema, "apply");
    const status = h("div", { id: "apply-status", "aria-live": "polite" });
    const form = h("form", { id: "apply-form", novalidate: true },
      h("h3", null, t("services.apply")),
      h("p", { class: "muted small" }, t("services.required_note")),
      regionField.element, fields.element,
      h("div", { class: "actions" }, h("button", { type: "submit", id: "apply-go" }, t("services.submit"))), status);
    box.append(form);
    focusHeading(heading);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      fields.clearErrors(); regionField.show([]);
      clear(status).append(h("span", { class: "loading" }, t("saving")));
      try {
        const r = (await gql(`mutation($s: String!, $r: String!, $f: JSON!) { submitApplication(service: $s, region: $r, form: $f) { id position } }`,
          { s: code, r: regionField.input.value.trim(), f: fields.values() })).submitApplication;
        localStorage.setItem("tongban.services.region", regionField.input.value.trim());
        pendingPosition = r.position;
        sessionStorage.setItem("tongban.services.flash", t("services.submitted"));
        location.hash = "#/services?application=" + encodeURIComponent(r.id);
      } catch (e) {
        if (isAlive()) formFailure(e, fields, status, regionField);
      } finally { button.disabled = false; }
    });
  }

  // --- one application: status, history, supplement, withdraw
  // `refresh`: drawn again in place (after a step, a live update), so the
  // focus stays where it is.
  async function applicationView(view, id, pos, isAlive, reloadList, refresh) {
    let box = document.getElementById("application");
    if (!box) { box = h("section", { class: "card span2", id: "application" }, loading()); view.append(box); }
    let a;
    try {
      a = (await gql(`query($id: ID!, $pos: Int) { application(id: $id, minPosition: $pos) { ${APP_FIELDS} applicantId form
          history { step status official reasons at } residenceChange accessLog { official department purpose fields at } } }`,
      { id, pos: pos || null })).application;
    } catch (e) {
      if (isAlive()) clear(box).append(h("a", { href: "#/services" }, t("services.back")), errorBox(e, () => applicationView(view, id, null, isAlive, reloadList, false)));
      return;
    }
    if (!isAlive()) return;
    let s = null;
    try { s = await loadService(a.service); } catch (_) { /* the name falls back to the code */ }
    if (!isAlive()) return;
    const heading = h("h2", null, serviceName(a.service, s && s.name));
    const flash = sessionStorage.getItem("tongban.services.flash");
    sessionStorage.removeItem("tongban.services.flash");
    const lastRequest = [...a.history].reverse().find((x) => x.step === "request_more_information");
    clear(box).append(...kids(
      h("a", { href: "#/services", id: "app-back" }, t("services.back")),
      heading,
      flash ? h("div", { class: "ok", role: "status", id: "apply-done" }, flash) : null,
      h("p", { id: "app-status", "data-status": a.status }, statusPill(a.status), a.overdue ? [" ", pill("red", t("services.overdue"))] : null,
        h("span", { class: "muted small" }, " · " + t("services.submitted_at", { t: when(a.submittedAt) }) + " · " + t("services.due", { t: when(a.dueAt) }))),
      h("p", { class: "mono muted small" }, a.id + " · " + deptName(a.department) + " · " + a.region),
      a.residenceChange ? h("p", null, t("services.residence", { s: a.residenceChange })) : null,
      h("h3", null, t("services.history")), historyList(a.history),
      h("h3", null, t("services.form_now")), formView(a.form),
      h("h3", null, t("services.access")),
      a.accessLog.length ? h("ul", { class: "small", id: "app-access" }, a.accessLog.map((x) => h("li", null,
        deptName(x.department) + " · " + x.purpose + " · " + when(x.at), h("div", { class: "muted" }, x.fields.join(", ")))))
        : h("p", { class: "muted small" }, t("services.no_access"))));

    const after = async (position) => {
      pendingPosition = null;
      await applicationView(view, id, position, isAlive, reloadList, true);
      if (reloadList) reloadList(position);
    };
    // Answer a request for more information with the whole, corrected form.
    if (a.status === "awaiting_information" && s) {
      const fields = schemaForm(s.formSchema, "supplement", a.form);
      const note = h("textarea", { rows: "2" });
      const status = h("div", { "aria-live": "polite" });
      const form = h("form", { id: "supplement-form", novalidate: true },
        h("h3", null, t("services.supplement")),
        lastRequest ? h("p", { class: "na", id: "app-requested" }, t("services.requested", { r: lastRequest.reasons.join("; ") })) : null,
        fields.element, field("supplement-note", t("services.supplement_note"), note),
        h("div", { class: "actions" }, h("button", { type: "submit", id: "supplement-go" }, t("services.supplement_go"))), status);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        fields.clearErrors();
        clear(status).append(h("span", { class: "loading" }, t("saving")));
        try {
          const r = (await gql(`mutation($id: ID!, $f: JSON!, $n: String!) { supplementApplication(id: $id, form: $f, note: $n) { position } }`,
            { id, f: fields.values(), n: note.value.trim() })).supplementApplication;
          sessionStorage.setItem("tongban.services.flash", t("services.supplemented"));
          await after(r.position);
        } catch (e) { if (isAlive()) formFailure(e, fields, status, null); }
      });
      box.append(form);
    }
    if (["submitted", "under_review", "awaiting_information"].includes(a.status)) {
      const reason = h("input", { type: "text", autocomplete: "off" });
      const status = h("div", { "aria-live": "polite" });
      const form = h("form", { id: "withdraw-form" },
        h("details", null, h("summary", { id: "withdraw-open" }, t("services.withdraw")),
          field("withdraw-reason", t("services.withdraw_reason"), reason),
          h("div", { class: "actions" }, h("button", { type: "submit", class: "danger", id: "withdraw-go" }, t("services.withdraw_go")))), status);
      submitting(form, status, async () => {
        const r = (await gql(`mutation($id: ID!, $r: String!) { withdrawApplication(id: $id, reason: $r) { position } }`,
          { id, r: reason.value.trim() })).withdrawApplication;
        sessionStorage.setItem("tongban.services.flash", t("services.withdrawn"));
        await after(r.position);
        return "";
      });
      box.append(form);
    }
    if (!refresh) focusHeading(heading);
  }

  // ============================================== department officials
  async function queuePage(gen) {
    let alive = true;
    onLeave(() => { alive = false; }, gen);
    const main = document.getElementById("main");
    main.append(h("h1", null, t("queue.title")));
    const grid = h("div", { class: "grid two", id: "queue" });
    main.append(grid);
    const id = query().get("application");
    if (id) { await caseView(grid, id, () => alive); return; }

    const list = h("div", { id: "queue-list", "aria-live": "polite" }, loading());
    const c = card(t("queue.title"), h("p", { class: "muted small" }, t("queue.lead")),
      h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", id: "queue-refresh", onclick: () => load() }, t("queue.refresh"))), list);
    c.classList.add("span2");
    grid.append(c);
    async function load(pos) {
      try {
        const d = await gql(`query($pos: Int) { applicationQueue(minPosition: $pos) { ${APP_FIELDS} } }`, { pos: pos || null });
        if (!alive) return;
        clear(list);
        if (!d.applicationQueue.length) { list.append(h("p", { class: "muted", id: "queue-empty" }, t("queue.empty"))); return; }
        list.append(h("div", { class: "table-wrap" }, h("table", null,
          h("thead", null, h("tr", null, [t("services.detail"), t("queue.applicant"), "", t("services.due", { t: "" }).trim(), ""].map((x) => h("th", null, x)))),
          h("tbody", null, d.applicationQueue.map((a) => h("tr", { "data-application": a.id, "data-status": a.status },
            h("td", null, serviceName(a.service), h("div", { class: "mono muted small" }, a.region)),
            h("td", null, tx("queue.applicant." + a.applicantKind, a.applicantKind)),
            h("td", null, statusPill(a.status)),
            h("td", { class: "small" }, when(a.dueAt), a.overdue ? [" ", pill("red", t("services.overdue"))] : null),
            h("td", null, h("a", { href: "#/queue?application=" + encodeURIComponent(a.id), class: "queue-open" }, t("queue.open")))))))));
      } catch (e) { if (alive) clear(list).append(errorBox(e, () => load())); }
    }
    // Every 30 s, unless the official is in the middle of something.
    const timer = setInterval(() => { if (!list.contains(document.activeElement)) load(); }, 30000);
    onLeave(() => clearInterval(timer), gen);
    await load(takePosition());
  }

  // --- one application, opened with a stated purpose
  async function caseView(grid, id, isAlive) {
    const box = h("section", { class: "card span2", id: "case" });
    grid.append(box);
    const purpose = h("input", { type: "text", required: true, value: t("queue.purpose_default"), autocomplete: "off" });
    const status = h("div", { "aria-live": "polite" });
    const form = h("form", { id: "queue-open-form" },
      field("queue-purpose", t("queue.purpose"), purpose),
      h("div", { class: "actions" }, h("button", { type: "submit", id: "queue-open-go" }, t("queue.open_go"))), status);
    const heading = h("h2", null, t("services.detail"));
    box.append(h("a", { href: "#/queue", id: "queue-back" }, t("services.back")), heading, h("p", { class: "mono muted small" }, id), form);
    const body = h("div", { id: "case-body" });
    box.append(body);
    let why = "";
    // Opening is recorded (and shown to the applicant), so it happens once;
    // the official's own steps then update the view in place.
    let workforceBox = null;
    async function open() {
      const a = (await gql(`query($id: ID!, $p: String!) { application(id: $id, purpose: $p) {
          ${APP_FIELDS} applicantId form history { step status official reasons at } } }`, { id, p: why })).application;
      if (!isAlive()) return;
      form.hidden = true;
      let s = null;
      try { s = await loadService(a.service); } catch (_) { /* name falls back to the code */ }
      heading.textContent = serviceName(a.service, s && s.name);
      if (a.service === "work-resumption-permit" && a.applicantKind === "enterprise") workforceBox = await workforce();
      draw(a);
      focusHeading(heading);
    }
    function draw(a) {
      clear(body).append(
        h("p", { id: "case-status", "data-status": a.status }, statusPill(a.status), a.overdue ? [" ", pill("red", t("services.overdue"))] : null,
          h("span", { class: "muted small" }, " · " + t("services.submitted_at", { t: when(a.submittedAt) }) + " · " + t("services.due", { t: when(a.dueAt) }))),
        h("p", { class: "small" }, t("queue.applicant") + ": " + tx("queue.applicant." + a.applicantKind, a.applicantKind) + " ",
          h("span", { class: "mono" }, a.applicantId), " · " + a.region),
        h("h3", null, t("queue.form")), formView(a.form),
        h("h3", null, t("services.history")), historyList(a.history));
      if (workforceBox) body.append(workforceBox);
      body.append(actions(a));
    }
    async function workforce() {
      const box = h("div", { id: "workforce" }, h("h3", null, t("queue.workforce")), h("p", { class: "muted small" }, t("queue.workforce_lead")));
      try {
        const w = (await gql(`query($id: ID!) { workResumptionReview(id: $id) { registered green yellow red unknown greenPercent } }`, { id })).workResumptionReview;
        if (!w.registered) { box.append(h("p", { class: "na" }, t("queue.no_employees"))); return box; }
        const pct = (n) => (100 * n / w.registered).toFixed(1) + "%";
        box.append(
          h("p", { id: "green-share", "data-percent": w.greenPercent }, h("strong", null,
            t("queue.green_share", { g: w.green, n: w.registered, p: (w.greenPercent == null ? 0 : w.greenPercent).toFixed(1) + "%" }))),
          h("div", { class: "share", role: "img", "aria-label": t("queue.counts", { g: w.green, y: w.yellow, r: w.red, u: w.unknown }) },
            h("span", { class: "g", style: "width:" + pct(w.green) }), h("span", { class: "y", style: "width:" + pct(w.yellow) }),
            h("span", { class: "r", style: "width:" + pct(w.red) })),
          h("p", { class: "small muted" }, t("queue.counts", { g: w.green, y: w.yellow, r: w.red, u: w.unknown })));
      } catch (e) {
        // No employment registry connected: say so plainly, it is no fault.
        box.append(/employment registry/.test(e.message || "") ? h("p", { class: "na", id: "workforce-na" }, e.message) : errorBox(e));
      }
      return box;
    }
    function actions(a) {
      const wrap = h("div", { id: "case-actions" }, h("h3", null, t("queue.actions")));
      const status = h("div", { "aria-live": "polite", id: "case-action-status" });
      const run = (fn) => async (ev) => {
        if (ev) ev.preventDefault();
        const buttons = [...wrap.querySelectorAll("button")];
        buttons.forEach((b) => { b.disabled = true; });
        clear(status).append(h("span", { class: "loading" }, t("saving")));
        try {
          const r = await fn();
          if (r === null) { clear(status); return; }
          if (!isAlive()) return;
          pendingPosition = r.position; // the queue, when the official goes back
          draw(r.application);
          const st = document.getElementById("case-action-status");
          if (st) clear(st).append(h("div", { class: "ok", role: "status" }, t("queue.done", { s: tx("status." + r.application.status, "") })));
          const next = body.querySelector("#case-actions button, #case-actions textarea");
          if (next) next.focus();
        } catch (e) { clear(status).append(errorBox(e)); } finally { buttons.forEach((b) => { b.disabled = false; }); }
      };
      // `mutation` names one field that returns {position}; the step it
      // records leads to `next` with these reasons.
      const mutate = async (mutation, vars, step, next, reasons) => {
        const d = await gql(mutation, Object.assign({ id }, vars));
        const history = a.history.concat([{ step, status: next, official: P.me() && P.me().id, reasons, at: new Date().toISOString() }]);
        return { position: Object.values(d)[0].position, application: Object.assign({}, a, { status: next, history }) };
      };
      if (!["submitted", "under_review", "awaiting_information"].includes(a.status)) {
        wrap.append(h("p", { class: "muted" }, t("queue.closed")));
        return wrap;
      }
      if (a.status === "submitted") {
        wrap.append(h("div", { class: "actions" }, h("button", { type: "button", id: "case-accept", onclick: run(() => mutate("mutation($id: ID!) { acceptApplication(id: $id) { position } }", {}, "accept", "under_review", [])) }, t("queue.accept"))));
      }
      if (a.status === "awaiting_information") wrap.append(h("p", { class: "na" }, t("queue.waiting")));
      if (a.status === "submitted" || a.status === "under_review") {
        const what = h("textarea", { rows: "2" });
        const f = h("form", { id: "case-request-form" }, field("case-request", t("queue.requested_what"), what),
          h("div", { class: "actions" }, h("button", { type: "submit", class: "secondary", id: "case-request-go" }, t("queue.request"))));
        f.addEventListener("submit", run(() => {
          if (!what.value.trim()) { what.focus(); return null; }
          return mutate("mutation($id: ID!, $q: String!) { requestInformation(id: $id, requested: $q) { position } }",
            { q: what.value.trim() }, "request_more_information", "awaiting_information", [what.value.trim()]);
        }));
        wrap.append(f);
      }
      const reasons = h("textarea", { rows: "3" });
      const decide = h("form", { id: "case-decide-form" }, field("case-reasons", t("queue.reasons"), reasons));
      const need = () => { if (!lines(reasons.value).length) { reasons.focus(); reasons.setAttribute("aria-invalid", "true"); return false; } reasons.removeAttribute("aria-invalid"); return true; };
      const buttons = h("div", { class: "actions" });
      if (a.status === "under_review") {
        buttons.append(h("button", { type: "button", id: "case-approve", onclick: run(() => need() ? mutate("mutation($id: ID!, $rs: [String!]!) { approveApplication(id: $id, reasons: $rs) { position } }",
          { rs: lines(reasons.value) }, "approve", "approved", lines(reasons.value)) : null) }, t("queue.approve")));
      }
      buttons.append(h("button", { type: "button", class: "danger", id: "case-reject", onclick: run(() => need() ? mutate("mutation($id: ID!, $rs: [String!]!) { rejectApplication(id: $id, reasons: $rs) { position } }",
          { rs: lines(reasons.value) }, "reject", "rejected", lines(reasons.value)) : null) }, t("queue.reject")));
      decide.append(buttons);
      decide.addEventListener("submit", (ev) => ev.preventDefault());
      wrap.append(decide, status);
      return wrap;
    }
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      why = purpose.value.trim();
      if (!why) { purpose.focus(); return; }
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      clear(status).append(h("span", { class: "loading" }, t("loading")));
      try { await open(); clear(status); } catch (e) { if (isAlive()) clear(status).append(errorBox(e)); } finally { button.disabled = false; }
    });
    purpose.focus();
    purpose.select();
  }

  P.register("services", { roles: ["citizen", "enterprise"], home: ["enterprise"], render: servicesPage, text: TEXT });
  P.register("queue", { roles: ["department"], home: ["department"], render: queuePage, text: TEXT });
})();
