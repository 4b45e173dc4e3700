// omnirelay's web console: one module, no dependencies, no build step.
// It is a client of the public endpoints (/v1 for an account, /admin/v1 for the operator); the
// session cookie stands in for the Authorization header, and every state-changing request
// carries the session's CSRF token.

const CHANNELS = ["sms", "viber", "whatsapp", "telegram", "rcs"];
const STATUSES = ["ACK", "DELIVRD", "UNDELIV", "FAILED", "UNKNOWN", "ACCEPTD", "REJECTD",
  "DELETED", "EXPIRED", "NACK", "SEEN"];
const LIVE_MS = 3000;
const state = { session: null, account: "", timer: null };
const main = () => document.getElementById("main");

// --- DOM helpers: text goes in as text, never as HTML -------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (key === "style") {
      for (const rule of String(value).split(";")) {
        const [name, ...rest] = rule.split(":");
        if (name.trim()) el.style.setProperty(name.trim(), rest.join(":").trim());
      }
    }
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function show(...nodes) {
  main().replaceChildren(...nodes);
}

function toast(text) {
  const box = document.getElementById("toast");
  const item = h("div", {}, text);
  box.append(item);
  setTimeout(() => item.remove(), 5000);
}

// Local time shown, UTC on hover.
function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const at = new Date(iso);
  return h("time", { datetime: iso, title: at.toISOString().replace(".000Z", "Z") + " UTC" },
    at.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" }));
}

const TONE = {
  DELIVRD: "ok", SEEN: "ok", delivered: "ok", done: "ok", active: "ok", up: "ok", ok: "ok",
  UNDELIV: "bad", FAILED: "bad", REJECTD: "bad", EXPIRED: "bad", NACK: "bad", DELETED: "bad",
  dead: "bad", canceled: "bad", disabled: "bad", down: "bad", failing: "bad", skipped: "info",
  ACK: "wait", ACCEPTD: "wait", UNKNOWN: "wait", pending: "wait", sending: "wait",
  scheduled: "wait", due: "wait", sent: "wait", waiting: "info", none: "info",
  ready: "ok", "not ready": "bad", running: "ok", bound: "ok", binding: "wait", stopped: "info",
};
// A status is always written out; the colour only repeats it.
function badge(text) {
  if (text === null || text === undefined) return h("span", { class: "muted" }, "—");
  return h("span", { class: `badge ${TONE[text] || "info"}` }, String(text));
}

function cell(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

function table(headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", { class: "stack" },
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows)));
}

// A live refresh that brings nothing new leaves the page alone, so that focus, selection and
// the reader's place survive it.
const shown = new WeakMap();
function unchanged(element, data) {
  const text = JSON.stringify(data);
  if (shown.get(element) === text) return true;
  shown.set(element, text);
  return false;
}

// --- API ---------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = state.session ? state.session.csrf_token : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const detail = data && data.errors ? data.errors.map((e) => e.detail).join("; ")
      : data && data.message ? data.message : response.statusText;
    if (response.status === 401 && !path.startsWith("/console/")) {
      state.session = null;
      renderSignIn("Your session has ended; sign in again.");
    }
    throw new ApiError(response.status, detail);
  }
  return data;
}

const operator = () => state.session && state.session.kind === "operator";
const base = () => (operator() ? "/admin/v1" : "/v1");

// A listing's query: the filters given, plus the account the operator is looking at.
function listing(path, params) {
  const query = new URLSearchParams();
  if (operator()) query.set("account", state.account);
  for (const [key, value] of Object.entries(params)) if (value) query.set(key, value);
  return `${base()}${path}?${query}`;
}

// --- session -----------------------------------------------------------------------------
function renderSignIn(message) {
  stopLive();
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const asAccount = h("form", { id: "sign-in-account", onsubmit: (e) => signIn(e, error) },
    h("label", {}, "API username", h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, "API password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, "Sign in"));
  const asOperator = h("form", { id: "sign-in-operator", onsubmit: (e) => signIn(e, error) },
    h("label", {}, "Operator token", h("input", { name: "token", type: "password", autocomplete: "off", required: true })),
    h("button", { type: "submit" }, "Sign in as operator"));
  show(h("section", { class: "signin" },
    h("h1", {}, "Sign in to the omnirelay console"),
    error,
    h("div", { class: "panel" }, h("h2", {}, "With an account's API credentials"), asAccount),
    h("div", { class: "panel" }, h("h2", {}, "As the operator"), asOperator,
      h("p", { class: "muted" }, "The operator token is [admin] token in the configuration; "
        + "without one, there is no operator sign-in."))));
  asAccount.querySelector("input").focus();
}

async function signIn(event, error) {
  event.preventDefault();
  const body = Object.fromEntries(new FormData(event.target));
  try {
    state.session = await api("POST", "/console/sign-in", body);
    state.account = "";
    await start();
  } catch (exc) {
    error.textContent = `Sign-in refused: ${exc.message}`;
  }
}

async function signOut() {
  try {
    await api("POST", "/console/sign-out");
  } catch (exc) {
    toast(`Sign-out: ${exc.message}`);
  }
  state.session = null;
  location.hash = "";
  renderSignIn("Signed out.");
}

const PAGES = [
  ["messages", "Messages"], ["inbound", "Inbound"], ["webhooks", "Webhooks"],
  ["compose", "Composer"], ["traffic", "Traffic"],
];
const OPERATOR_PAGES = [["accounts", "Accounts"], ["connectors", "Connectors & health"]];

async function start() {
  const session = state.session;
  document.getElementById("who").textContent = operator() ? "operator" : `account ${session.name}`;
  document.getElementById("sign-out").hidden = false;
  const nav = document.getElementById("nav");
  const pages = operator() ? [...PAGES.filter(([p]) => p !== "compose"), ...OPERATOR_PAGES] : PAGES;
  nav.replaceChildren(...pages.map(([page, title]) => h("a", { href: `#/${page}` }, title)));
  nav.hidden = false;
  if (operator() && !state.account) {
    const { accounts } = await api("GET", "/admin/v1/accounts");
    state.account = accounts.length ? accounts[0].name : "";
  }
  route();
}

// --- routing -----------------------------------------------------------------------------
function stopLive() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

// Re-run `refresh` every few seconds while the page is visible and `enabled()` says so.
function live(refresh, enabled, every = LIVE_MS) {
  stopLive();
  state.timer = setInterval(() => {
    if (!document.hidden && (!enabled || enabled())) refresh().catch(() => {});
  }, every);
}

function route() {
  if (!state.session) return renderSignIn();
  stopLive();
  const [page, arg] = location.hash.replace(/^#\/?/, "").split("/");
  for (const link of document.querySelectorAll("#nav a")) {
    const current = link.getAttribute("href") === `#/${page || "messages"}`;
    if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const render = {
    messages: messagesPage, message: () => messagePage(decodeURIComponent(arg || "")),
    inbound: inboundPage, webhooks: webhooksPage, compose: composePage, traffic: trafficPage,
    accounts: accountsPage, connectors: connectorsPage,
  }[page || "messages"] || messagesPage;
  render().catch((exc) => {
    if (exc instanceof ApiError && exc.status === 401) return;
    show(h("p", { class: "error", role: "alert" }, `Could not load this page: ${exc.message}`));
  });
  main().focus({ preventScroll: true });
}

// The operator reads one account at a time; a picker above every listing chooses it.
async function accountPicker(onChange) {
  if (!operator()) return null;
  const { accounts } = await api("GET", "/admin/v1/accounts");
  const select = h("select", { name: "account", onchange: (e) => { state.account = e.target.value; onChange(); } },
    accounts.map((a) => h("option", { value: a.name, selected: a.name === state.account }, a.name)),
    h("option", { value: "none", selected: state.account === "none" }, "(no account)"));
  return h("label", {}, "Account", select);
}

function firstSend() {
  const host = location.origin;
  return h("pre", {}, `curl -u "$API_USERNAME:$API_PASSWORD" -H 'Content-Type: application/json' \\\n`
    + `  -d '{"to": "+37255512345", "messages": [{"channel": "viber", "text": "Hello"}, {"channel": "sms", "text": "Hello"}]}' \\\n`
    + `  ${host}/v1/omnimessage`);
}

// Datetime-local inputs are in the viewer's zone; the API takes ISO 8601 in UTC.
function isoOf(local) {
  return local ? new Date(local).toISOString() : "";
}

// A paged listing: filters, previous/next by cursor, optional live refresh of the shown page.
async function pagedListing({ title, path, key, filters, headers, row, empty, extra }) {
  const picker = await accountPicker(() => route());
  const form = h("form", { class: "filters", role: "search" }, picker, filters,
    h("label", {}, "Per page", h("select", { name: "limit" },
      [20, 50, 100].map((n) => h("option", { value: n, selected: n === 50 }, n)))),
    h("button", { type: "submit" }, "Search"));
  const liveBox = h("input", { type: "checkbox", name: "live", checked: true });
  const body = h("div", { "aria-live": "polite" });
  const pager = h("div", { class: "row" });
  const cursors = [""];
  const params = () => {
    const data = Object.fromEntries(new FormData(form));
    delete data.account;
    for (const name of ["since", "until"]) data[name] = isoOf(data[name]);
    return data;
  };
  async function load() {
    const data = await api("GET", listing(path, { ...params(), next: cursors[cursors.length - 1] }));
    if (unchanged(body, data)) return;
    const items = data[key];
    body.replaceChildren(items.length ? table(headers, items.map(row)) : empty());
    pager.replaceChildren(
      h("button", { type: "button", class: "plain", disabled: cursors.length === 1,
        onclick: () => { cursors.pop(); load(); } }, "← Newer"),
      h("button", { type: "button", class: "plain", disabled: !data.next,
        onclick: () => { cursors.push(data.next); load(); } }, "Older →"),
      h("span", { class: "muted" }, `page ${cursors.length}, ${items.length} shown`));
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); cursors.splice(1); load().catch((x) => toast(x.message)); });
  show(h("h1", {}, title), form, h("div", { class: "row" }, extra || null,
    h("label", { class: "inline" }, h("span", {}, "Live refresh"), liveBox)), body, pager);
  await load();
  live(load, () => liveBox.checked);
}

function options(name, values, label) {
  return h("label", {}, label, h("select", { name },
    h("option", { value: "" }, "any"), values.map((v) => h("option", { value: v }, v))));
}

function timeFilters() {
  return [h("label", {}, "Since", h("input", { type: "datetime-local", name: "since", step: 1 })),
    h("label", {}, "Until", h("input", { type: "datetime-local", name: "until", step: 1 }))];
}

// --- pages -------------------------------------------------------------------------------
function messagesPage() {
  return pagedListing({
    title: "Messages", path: "/omnimessages", key: "omnimessages",
    filters: [h("label", {}, "Recipient", h("input", { name: "to", placeholder: "+37255512345", inputmode: "tel" })),
      options("status", STATUSES, "Status"), options("channel", CHANNELS, "Channel"), ...timeFilters()],
    headers: ["Created", "To", "State", "Attempts", ""],
    row: (m) => h("tr", {},
      cell("Created", when(m.created)), cell("To", m.to), cell("State", badge(m.state)),
      cell("Attempts", h("span", {}, m.attempts.map((a, i) => [i ? " → " : "", `${a.channel} `, badge(a.status || a.state)]))),
      cell("", h("a", { href: `#/message/${encodeURIComponent(m.omnimessage_id)}` }, "Open"))),
    empty: () => h("div", { class: "empty" }, h("p", {}, "No messages match. Send a first one from the ",
      h("a", { href: "#/compose" }, "composer"), ", or with curl:"), firstSend()),
  });
}

async function messagePage(id) {
  const holder = h("div");
  async function load() {
    const m = await api("GET", `${base()}/omnimessage/${encodeURIComponent(id)}`);
    if (unchanged(holder, m)) return;
    holder.replaceChildren(
      h("p", {}, "To ", h("strong", {}, m.to), " · ", badge(m.state), " · created ", when(m.created),
        " · via ", m.surface, m.time_to_send ? [" · scheduled for ", when(m.time_to_send)] : null),
      h("p", { class: "mono" }, m.omnimessage_id),
      h("h2", {}, "Attempts, in send order"),
      h("ol", { class: "chain", "aria-label": "fallback chain" }, m.attempts.map((a, i) => h("li", {},
        h("div", {}, h("strong", {}, `${i + 1}. ${a.channel}`), " from ", a.sender, " ", badge(a.state), " ", badge(a.status)),
        a.error ? h("div", { class: "error" }, `err ${a.err}: ${a.error}`) : null,
        a.content && a.content.text ? h("div", { class: "muted" }, `“${a.content.text}”`) : null,
        h("ol", { class: "timeline", "aria-label": `timeline of ${a.channel}` }, a.timeline.length
          ? a.timeline.map((t) => h("li", {}, when(t.at), " ", t.event === "status" ? badge(t.status) : h("strong", {}, t.event),
            h("span", { class: "muted" }, ` ${t.source}${t.err ? `, err ${t.err}` : ""}`)))
          : h("li", { class: "muted" }, "nothing yet"))))),
      h("h2", {}, "Delivery reports"),
      m.reports.length ? table(["Created", "Attempt status", "Receiver", "State", "Tries", "Last answer", ""],
        m.reports.map((r) => h("tr", {},
          cell("Created", when(r.created)), cell("Attempt status", badge(r.status)), cell("Receiver", r.receiver),
          cell("State", badge(r.state)), cell("Tries", r.tries),
          cell("Last answer", r.status_code ? `HTTP ${r.status_code}` : (r.last_error || "—")),
          cell("", r.state === "pending" ? "" : h("button", { type: "button", class: "redeliver",
            onclick: () => redeliver(r.id).then(load) }, "Redeliver")))))
        : h("div", { class: "empty" }, "No delivery reports: this message was sent without a dlr_url "
          + "and its account has none. Give dlr_url in the request, or set the account's."));
  }
  show(h("h1", {}, "Message"), h("p", {}, h("a", { href: "#/messages" }, "← All messages")), holder);
  await load();
  live(load);
}

async function redeliver(id) {
  try {
    await api("POST", `${base()}/webhooks/${id}/redeliver`);
    toast(`Report ${id} queued again`);
  } catch (exc) {
    toast(`Redelivery refused: ${exc.message}`);
  }
}

function inboundPage() {
  return pagedListing({
    title: "Inbound messages", path: "/inbound", key: "inbound",
    filters: [h("label", {}, "From", h("input", { name: "from" })), h("label", {}, "To", h("input", { name: "to" })), ...timeFilters()],
    headers: ["Received", "Channel", "From", "To", "Text", "Callback"],
    row: (m) => h("tr", {}, cell("Received", when(m.received)), cell("Channel", m.channel), cell("From", m.from),
      cell("To", m.to), cell("Text", m.text), cell("Callback", badge(m.callback))),
    empty: () => h("div", { class: "empty" }, h("p", {}, "No inbound messages yet. Replies to your numbers "
      + "show here once an upstream delivers them; set the account's inbound_numbers and inbound_url "
      + "to have them forwarded too.")),
  });
}

function webhooksPage() {
  const stateFilter = h("label", {}, "State", h("select", { name: "state" },
    h("option", { value: "" }, "any"), ["pending", "dead", "delivered"].map((s) =>
      h("option", { value: s, selected: s === "dead" }, s))));
  const all = h("button", { type: "button", onclick: async () => {
    try {
      const { redelivered } = await api("POST", listing("/webhooks/redeliver", {}), { state: "dead" });
      toast(`${redelivered.length} dead report(s) queued again`);
    } catch (exc) { toast(`Redelivery refused: ${exc.message}`); }
  } }, "Redeliver all dead");
  return pagedListing({
    title: "Webhooks", path: "/webhooks", key: "webhooks", filters: [stateFilter, ...timeFilters()], extra: all,
    headers: ["Created", "Kind", "Receiver", "State", "Tries", "Last answer", "About", ""],
    row: (w) => h("tr", {}, cell("Created", when(w.created)), cell("Kind", w.kind), cell("Receiver", w.receiver),
      cell("State", badge(w.state)), cell("Tries", w.tries),
      cell("Last answer", w.status_code ? `HTTP ${w.status_code}` : (w.last_error || "—")),
      cell("About", w.omnimessage_id ? h("a", { href: `#/message/${w.omnimessage_id}` }, w.status || "message") : "inbound"),
      cell("", w.state === "pending" ? "" : h("button", { type: "button", class: "redeliver",
        onclick: () => redeliver(w.id) }, "Redeliver"))),
    empty: () => h("div", { class: "empty" }, h("p", {}, "No webhooks in this state. Reports are queued "
      + "when a message has a dlr_url (or its account does); dead ones are those the receiver kept refusing.")),
  });
}

function variantFields(channel) {
  return h("fieldset", { class: "variant" },
    h("legend", {}, "Channel variant"),
    h("div", { class: "row" },
      h("label", {}, "Channel", h("select", { name: "channel" }, CHANNELS.map((c) => h("option", { value: c, selected: c === channel }, c)))),
      h("label", {}, "Sender", h("input", { name: "sender", placeholder: "account default" })),
      h("label", { style: "flex:1" }, "Text", h("input", { name: "text", required: true, value: "Hello from the console" })),
      h("button", { type: "button", class: "plain", onclick: (e) => moveVariant(e, -1) }, "↑", h("span", { class: "skip" }, " earlier")),
      h("button", { type: "button", class: "plain", onclick: (e) => moveVariant(e, 1) }, "↓", h("span", { class: "skip" }, " later")),
      h("button", { type: "button", class: "plain", onclick: (e) => e.target.closest("fieldset").remove() }, "Remove")));
}

function moveVariant(event, step) {
  const set = event.target.closest("fieldset");
  const other = step < 0 ? set.previousElementSibling : set.nextElementSibling;
  if (other) (step < 0 ? other.before(set) : other.after(set));
}

async function composePage() {
  if (operator()) {
    show(h("h1", {}, "Composer"), h("p", {}, "Sending is an account's: sign in with its API credentials."));
    return;
  }
  const variants = h("div", { class: "variants" }, variantFields("viber"), variantFields("sms"));
  const result = h("div", { "aria-live": "polite" });
  const form = h("form", { id: "composer", onsubmit: async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const messages = [...variants.querySelectorAll("fieldset")].map((set) => {
      const v = { channel: set.querySelector("[name=channel]").value, text: set.querySelector("[name=text]").value };
      const sender = set.querySelector("[name=sender]").value;
      if (sender) v.sender = sender;
      return v;
    });
    const body = { to: data.get("to"), messages };
    if (data.get("dlr_url")) body.dlr_url = data.get("dlr_url");
    try {
      const sent = await api("POST", "/v1/omnimessage", body);
      result.replaceChildren(h("p", {}, "Accepted: ",
        h("a", { href: `#/message/${sent.omnimessage_id}`, id: "sent-link" }, sent.omnimessage_id)));
    } catch (exc) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, `Refused: ${exc.message}`));
    }
  } },
  h("div", { class: "row" },
    h("label", {}, "To (E.164)", h("input", { name: "to", required: true, value: "+37255519981", inputmode: "tel" })),
    h("label", { style: "flex:1" }, "Delivery report URL (optional)", h("input", { name: "dlr_url", type: "url", placeholder: "https://example.com/dlr" }))),
  h("h2", {}, "Channel variants, in fallback order"), variants,
  h("div", { class: "row" },
    h("button", { type: "button", class: "plain", onclick: () => variants.append(variantFields("sms")) }, "Add a variant"),
    h("button", { type: "submit" }, "Send")));
  show(h("h1", {}, "Composer"),
    h("p", { class: "muted" }, "Sends through POST /v1/omnimessage as this account, to whichever upstream "
      + "the configuration routes each channel to (the sandbox unless [channels] says otherwise). With the "
      + "sandbox, a number ending in 9981 fails on chat channels and is delivered by SMS: a fallback chain."),
    form, result);
}

// Traffic, from the search endpoint: the newest messages of the window (up to `cap`).
const COLOURS = { sms: "#1f5fa8", viber: "#7b519d", whatsapp: "#25a162", telegram: "#2aa3d8", rcs: "#c2571a" };

async function trafficPage() {
  const picker = await accountPicker(() => route());
  const windowSelect = h("select", { name: "window" }, [[15, "15 minutes"], [60, "1 hour"], [360, "6 hours"], [1440, "24 hours"]]
    .map(([m, t]) => h("option", { value: m, selected: m === 60 }, t)));
  const out = h("div");
  async function load() {
    const minutes = Number(windowSelect.value);
    const since = new Date(Date.now() - minutes * 60000);
    const items = [];
    let next = "";
    for (let page = 0; page < 10; page += 1) {
      const data = await api("GET", listing("/omnimessages", { since: since.toISOString(), limit: 500, next }));
      items.push(...data.omnimessages);
      if (!data.next) break;
      next = data.next;
    }
    out.replaceChildren(...trafficView(items, since, minutes, await medianDelivery(items)));
  }
  show(h("h1", {}, "Traffic"), h("form", { class: "filters", onchange: () => load().catch((x) => toast(x.message)) },
    picker, h("label", {}, "Window", windowSelect)), out);
  await load();
  live(load, null, 15000);
}

// Median seconds from acceptance to the DELIVRD report, over the newest delivered messages
// (their timelines are only in the one-message endpoint, so a sample of them is read).
async function medianDelivery(items, sample = 30) {
  const delivered = items.filter((m) => finalOf(m) === "DELIVRD").slice(0, sample);
  const seconds = (await Promise.all(delivered.map((m) =>
    api("GET", `${base()}/omnimessage/${m.omnimessage_id}`).catch(() => null)))).flatMap((full) => {
    if (!full) return [];
    const at = full.attempts.flatMap((a) => a.timeline).find((t) => t.status === "DELIVRD");
    return at ? [(new Date(at.at) - new Date(full.created)) / 1000] : [];
  }).sort((a, b) => a - b);
  if (!seconds.length) return null;
  const mid = Math.floor(seconds.length / 2);
  return { value: seconds.length % 2 ? seconds[mid] : (seconds[mid - 1] + seconds[mid]) / 2, of: seconds.length };
}

function finalOf(m) {
  const last = m.attempts.filter((a) => a.status).pop();
  return last ? last.status : m.state;
}

const STATUS_COLOURS = { DELIVRD: "#17663a", SEEN: "#2e8b57", UNDELIV: "#a3251b", FAILED: "#d9534f",
  REJECTD: "#7a1f16", EXPIRED: "#c2571a", ACK: "#b08900", ACCEPTD: "#d4b106", sending: "#9aa5b1",
  scheduled: "#5b6470", canceled: "#444" };

function trafficView(items, since, minutes, median) {
  if (!items.length) {
    return [h("div", { class: "empty" }, h("p", {}, "No messages in this window. Send some from the ",
      h("a", { href: "#/compose" }, "composer"), " or with curl:"), firstSend())];
  }
  const buckets = Math.min(minutes, 60);
  const span = (minutes * 60000) / buckets;
  const byChannel = {};
  const byFinal = {};
  const finals = {};
  for (const m of items) {
    const i = Math.min(buckets - 1, Math.floor((new Date(m.created) - since) / span));
    const used = m.attempts.filter((a) => a.state !== "waiting" && a.state !== "skipped").pop() || m.attempts[0];
    (byChannel[used.channel] ||= new Array(buckets).fill(0))[Math.max(0, i)] += 1;
    const status = finalOf(m);
    finals[status] = (finals[status] || 0) + 1;
    (byFinal[status] ||= new Array(buckets).fill(0))[Math.max(0, i)] += 1;
  }
  const delivered = (finals.DELIVRD || 0) + (finals.SEEN || 0);
  const finished = items.filter((m) => m.state === "done").length;
  const perMinute = span / 60000;
  return [
    h("div", { class: "figures" },
      h("div", { class: "panel" }, "Messages", h("strong", {}, items.length)),
      h("div", { class: "panel" }, "Delivery ratio", h("strong", {}, finished ? `${Math.round((100 * delivered) / finished)} %` : "—"),
        h("span", { class: "muted" }, `${delivered} of ${finished} finished`)),
      h("div", { class: "panel" }, "Median time to delivery",
        h("strong", {}, median ? `${median.value.toFixed(2)} s` : "—"),
        h("span", { class: "muted" }, median ? `over the newest ${median.of} delivered` : "nothing delivered yet"))),
    h("h2", {}, `Messages per ${perMinute === 1 ? "minute" : `${perMinute} minutes`}, by the channel that carried them`),
    stackedBars(byChannel, buckets, since, span, COLOURS),
    h("div", { class: "legend" }, Object.keys(byChannel).map((c) => h("span", { style: `--c:${COLOURS[c] || "#888"}` }, c))),
    h("h2", {}, "Messages per interval, by final status"),
    stackedBars(byFinal, buckets, since, span, STATUS_COLOURS),
    h("div", { class: "legend" }, Object.keys(byFinal).map((c) => h("span", { style: `--c:${STATUS_COLOURS[c] || "#888"}` }, c))),
    table(["Status", "Messages"], Object.entries(finals).sort((a, b) => b[1] - a[1])
      .map(([s, n]) => h("tr", {}, cell("Status", badge(s)), cell("Messages", n)))),
  ];
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// Hand-written SVG: a stacked bar per time bucket. Small enough that a chart library would
// weigh more than it saves.
function stackedBars(series, buckets, since, span, colours) {
  const width = 720; const height = 200; const pad = 28;
  const totals = new Array(buckets).fill(0);
  for (const counts of Object.values(series)) counts.forEach((n, i) => { totals[i] += n; });
  const top = Math.max(1, ...totals);
  const bar = (width - pad) / buckets;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height + 20}`, role: "img",
    "aria-label": `messages per interval, at most ${top}` });
  chart.append(svg("text", { x: 0, y: 12, "font-size": 11 }, String(top)), svg("text", { x: 0, y: height, "font-size": 11 }, "0"));
  for (let i = 0; i < buckets; i += 1) {
    let y = height;
    for (const [channel, counts] of Object.entries(series)) {
      if (!counts[i]) continue;
      const tall = ((height - 10) * counts[i]) / top;
      y -= tall;
      chart.append(svg("rect", { x: pad + i * bar + 1, y, width: Math.max(1, bar - 2), height: tall, fill: colours[channel] || "#888" },
        svg("title", {}, `${counts[i]} ${channel}, from ${new Date(since.getTime() + i * span).toLocaleTimeString()}`)));
    }
  }
  chart.append(svg("text", { x: pad, y: height + 16, "font-size": 11 }, since.toLocaleTimeString()),
    svg("text", { x: width - 60, y: height + 16, "font-size": 11 }, "now"));
  return chart;
}

async function accountsPage() {
  const out = h("div", { "aria-live": "polite" });
  const secrets = h("div");
  async function load() {
    const { accounts } = await api("GET", "/admin/v1/accounts");
    out.replaceChildren(accounts.length ? table(["Name", "State", "API username", "Default sender", "Created", ""],
      accounts.map((a) => h("tr", {}, cell("Name", a.name), cell("State", badge(a.state)), cell("API username", h("span", { class: "mono" }, a.api_username)),
        cell("Default sender", a.default_sender), cell("Created", when(a.created)),
        cell("", h("span", { class: "row" },
          h("button", { type: "button", class: "plain", onclick: () => change(a.name, "rotate") }, "Rotate"),
          h("button", { type: "button", class: "plain", onclick: () => change(a.name, a.state === "active" ? "disable" : "enable") },
            a.state === "active" ? "Disable" : "Enable"))))))
      : h("div", { class: "empty" }, "No accounts yet: create one above."));
  }
  function reveal(credentials) {
    secrets.replaceChildren(h("div", { class: "panel" }, h("p", {}, "Shown once; store them now."),
      h("pre", {}, JSON.stringify(credentials, null, 2))));
  }
  async function change(name, verb) {
    try {
      const answer = await api("POST", `/admin/v1/accounts/${encodeURIComponent(name)}/${verb}`, verb === "rotate" ? { what: "all" } : undefined);
      if (verb === "rotate") reveal(answer);
      await load();
    } catch (exc) { toast(`${verb} refused: ${exc.message}`); }
  }
  const form = h("form", { class: "filters", onsubmit: async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    if (!data.default_sender) delete data.default_sender;
    try {
      reveal(await api("POST", "/admin/v1/accounts", data));
      form.reset();
      await load();
    } catch (exc) { toast(`Not created: ${exc.message}`); }
  } }, h("label", {}, "Name", h("input", { name: "name", required: true })),
  h("label", {}, "Default sender", h("input", { name: "default_sender" })),
  h("button", { type: "submit" }, "Create account"));
  show(h("h1", {}, "Accounts"), form, secrets, out);
  await load();
}

async function connectorsPage() {
  const out = h("div");
  async function load() {
    // The operator API's answer is the readiness report: database, loops and connectors.
    const ready = await api("GET", "/admin/v1/connectors");
    const { database: { seconds, ...database }, ...rest } = ready;
    if (unchanged(out, { ...rest, database })) return;
    const rows = [];
    for (const [provider, connectors] of Object.entries(ready.connectors || {})) {
      for (const [name, c] of Object.entries(connectors)) {
        rows.push(h("tr", {}, cell("Provider", provider), cell("Connector", name), cell("State", badge(c.state)),
          cell("Binds up", (c.binds || []).join(", ") || "none"),
          cell("Send rate", c.send_rate === null || c.send_rate === undefined ? "unthrottled" : `${c.send_rate} /s`),
          cell("Last error", c.last_error || "—")));
      }
    }
    out.replaceChildren(
      h("h2", {}, "Readiness"),
      h("p", {}, badge(ready.ready ? "ready" : "not ready"), " · database ", badge(ready.database.ok ? "ok" : "failing"),
        ` answered in ${ready.database.seconds} s`, ready.database.error ? ` (${ready.database.error})` : ""),
      table(["Loop", "State", "Restarts", "Since", "Last error"], Object.entries(ready.tasks || {}).map(([name, t]) =>
        h("tr", {}, cell("Loop", name), cell("State", badge(t.state)), cell("Restarts", t.restarts),
          cell("Since", when(t.since)), cell("Last error", t.last_error || "—")))),
      h("h2", {}, "Upstream connectors"),
      rows.length ? table(["Provider", "Connector", "State", "Binds up", "Send rate", "Last error"], rows)
        : h("div", { class: "empty" }, "No upstream connectors: every channel goes to the sandbox. "
          + "Configure [providers.smpp] and route a channel to it under [channels] to bind an SMSC."));
  }
  show(h("h1", {}, "Connectors & health"), out);
  await load();
  live(load);
}

// --- boot --------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", route);
  try {
    state.session = await api("GET", "/console/session");
    await start();
  } catch {
    renderSignIn();
  }
});
