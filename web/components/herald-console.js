// <herald-console>: Herald's operator console as a standard Web Component (Lit, no build step).
//
//   <script type="importmap">{"imports": {"lit": …}}</script>      (as for <herald-inbox>)
//   <script type="module" src="…/herald-console.js"></script>
//   <herald-console api-url="https://api.example.com"></herald-console>
//   document.querySelector("herald-console").tokenProvider = () => ops.getAdminToken();
//
// What a support agent answering "why didn't I get it?" needs, read from Herald's operator routes
// (`/v1/admin/*`, decision 038): the same records and computations as the `herald` CLI
// (`herald user`, `herald trace`, `herald suppression`), so the console and the CLI never tell two
// stories. Every request carries the token the token provider gives: it must hold the admin scope
// (`AdminScope`, `herald/admin` by default), or Herald answers 403.
//
//   1. Who is online: the people whose private-user channel is occupied, as routing sees them,
//      read again every `presence-interval` ms while the page is visible.
//   2. Notifications: a person's recent ones (read again every `poll-interval` ms while visible,
//      the selection kept), or one by its notification or event id; the one selected shows its
//      trace: the decision rule by rule, each channel's outcome, the delivery log in time order.
//   3. The suppression list, by channel or one contact's entry, with a lift per entry (a reason
//      is recorded with the operator's id; the person's own STOP needs `force`).
// Listings come a page at a time (`page-size`, the API's cursor): "more" reads the next page, and
// a refresh reads again the pages shown. Each listing applies only its latest read's answer.
// Polling stops while `document.hidden` and starts again, at once, when the page is shown.
// A read that fails keeps what was shown, with a note saying when it could not be refreshed (a
// trace or a listing is cleared only when Herald answers 404, or when another one is asked for).
// Herald refusing the token (401, 403) stops every feed until the token provider or the API URL
// change, or the operator presses "Try again" (after a 401, that calls `tokenProvider({refresh:
// true})` first, so a provider that caches its token gets a new one).
// Events: `herald-error` (detail: the error; once per failure, not at every failing poll) and
// `herald-recovered` (every failure reported has cleared: the reads succeed again).

import { LitElement, css, html, nothing } from "lit";
import { keyed } from "lit/directives/keyed.js";
import { repeat } from "lit/directives/repeat.js";
import { HeraldApiError, HeraldClient } from "./herald-client.js";

/** Every string the console shows, in one place so that it can be localized later. */
export const STRINGS = {
  online: {
    heading: "Who is online",
    caption: (count, hours, more) =>
      `${count} ${count === 1 ? "person" : "people"} online${more ? " shown" : ""} (channel occupied, confirmed within ${hours})`,
    person: "Person",
    confirmed: "Confirmed online at (UTC)",
    actions: "Actions",
    show: "Notifications",
    showLabel: (user) => `Show the notifications of ${user}`,
    nobody: "Nobody is online.",
    more: "Show more people",
    checked: (at) => `Checked ${at}.`,
    came: (user) => `${user} is online.`,
    left: (user) => `${user} went offline.`,
  },
  notifications: {
    heading: "Notifications",
    personLabel: "Person (user id)",
    personButton: "Show notifications",
    idLabel: "Notification or event id",
    memberLabel: "Person, for an audience's event (optional)",
    idButton: "Show trace",
    caption: (user) => `Recent notifications of ${user}, newest first`,
    created: "Created (UTC)",
    notification: "Notification",
    urgency: "Urgency",
    category: "Category",
    status: "Status",
    channels: "Channels",
    person: "Read by the person",
    actions: "Actions",
    trace: "Trace",
    traceLabel: (n) => `Show the trace of ${n.type} ${n.notification_id}`,
    none: (user) => `No notifications on record for ${user}.`,
    nothing: "—",
    arrived: (count, user) => `${count} new notification${count === 1 ? "" : "s"} for ${user}.`,
    updated: (at) => `Updated ${at}.`,
    live: (seconds) => `Read again every ${seconds} s while this page is visible.`,
  },
  trace: {
    heading: (id) => `Trace of ${id}`,
    close: "Close the trace",
    ids: (t) => `event ${t.event_id} · person ${t.user_id} · locale ${t.locale}`,
    summary: (t, created) => `${t.type} · ${t.urgency} · ${t.category} · ${t.status} · created ${created}`,
    marks: { seen_at: "seen", read_at: "read", acked_at: "acknowledged", archived_at: "archived" },
    decisionCaption: "Decision, rule by rule",
    step: "Step",
    verdict: "Verdict",
    rule: "Rule",
    channel: "Channel",
    reason: "Reason",
    noDecision: "No decision trace on record.",
    outcomesCaption: "Each channel's outcome",
    outcome: "Outcome",
    provider: "Provider",
    providerId: "Provider message id",
    noOutcomes: "No channel: nothing was sent.",
    logCaption: "Delivery log, in time order",
    time: "Time (UTC)",
    offset: "Since created",
    details: "Code, id, detail",
    noLog: "The delivery log is empty.",
    notFound: (id) => `No notification ${id}: never routed, expired or erased.`,
  },
  suppressions: {
    heading: "Suppression list",
    filter: "Channel",
    all: "All channels",
    channelNames: { email: "Email", sms: "SMS", push: "Push" },
    reload: "Reload",
    // The list is read a page at a time in the table's order (a Scan), not by date: what is shown is
    // sorted newest first, and a later page may hold a newer entry.
    caption: (count, more) =>
      `${count} suppressed ${count === 1 ? "contact" : "contacts"}${more ? " shown, newest first among them" : ", newest first"}`,
    contact: "Contact or address",
    channel: "Channel",
    reason: "Reason",
    then: (later) => `then ${later}`,
    source: "Source",
    since: "Since (UTC)",
    notification: "Notification",
    actions: "Actions",
    lift: "Lift",
    liftLabel: (who) => `Lift: ${who}`,
    traceLabel: (id) => `Show the trace of ${id}`,
    none: "Nothing is suppressed.",
    more: "Load more",
    moreNote:
      "More entries are on the list. It is read a page at a time in its own order, not by date: a later page may hold newer entries.",
    find: "Find a contact",
    contactLabel: "Contact (email, E.164 phone, device token or key)",
    findButton: "Find",
    showAll: "Show the whole list",
    notFound: (contact) => `${contact} is not suppressed.`,
    dialogHeading: (who) => `Lift the suppression of ${who}`,
    dialogText:
      "Herald will use this contact again. Your reason is recorded with your operator id, beside what the entry was.",
    why: "Why (recorded; at least 3 characters)",
    optOut:
      "This is the person's own opt-out: they replied STOP. They opt back in by replying START; lift it for them only if they asked you to.",
    force: "Lift the person's own opt-out anyway",
    submit: "Lift",
    cancel: "Cancel",
    lifting: "Lifting…",
    lifted: (answer, who) =>
      `Lifted ${who} (was ${answer.was} from ${answer.source} since ${answer.since}), recorded as lifted by ${answer.lifted_by}.`,
    changed: (message) => `Not lifted: ${message}. The list was read again.`,
    notLifted: (who, message) => `${who} was not lifted: ${message}. The list was read again.`,
    notSuppressed: (who) => `${who} is no longer suppressed. The list was read again.`,
  },
  status: "Console messages",
  loading: "Loading…",
  forbidden: "This token does not carry the admin scope: Herald refuses the operator routes (403).",
  unauthorized: "Herald did not accept the token (401): sign in again.",
  failed: (message) => `Herald could not answer: ${message}`,
  stale: (at) => `Could not refresh at ${at}; shown as last read.`,
  halted: "Stopped reading Herald: it refused the token. The console reads again when the token changes, or",
  retry: "Try again",
  paused: "Not read: the console stopped reading Herald (see above).",
};

const CHANNELS = ["email", "sms", "push"];

/** An ISO time from the API as a Date (the API's stamps have microseconds; Date reads 3 digits). */
function parseTime(iso) {
  if (!iso) return null;
  const trimmed = String(iso).replace(/(\.\d{3})\d+/, "$1");
  const at = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(trimmed) ? trimmed : `${trimmed}Z`);
  return Number.isNaN(at.getTime()) ? null : at;
}

/** `2026-11-30 20:01:02.123Z`, as `herald trace` prints times. */
export function formatUtc(iso) {
  const at = parseTime(iso);
  return at ? at.toISOString().replace("T", " ") : String(iso ?? "—");
}

/** `+1.2s` from `start` to `iso`, as `herald trace` prints offsets. */
export function formatOffset(iso, start) {
  const at = parseTime(iso);
  const from = parseTime(start);
  if (!at || !from) return "";
  const seconds = (at - from) / 1000;
  return `${seconds >= 0 ? "+" : ""}${seconds.toFixed(1)}s`;
}

function hours(seconds) {
  return seconds % 3600 === 0 ? `${seconds / 3600} h` : `${Math.round(seconds / 60)} min`;
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

export class HeraldConsole extends LitElement {
  static properties = {
    apiUrl: { type: String, attribute: "api-url" },
    tokenProvider: { attribute: false },
    person: { type: String },
    limit: { type: Number },
    pollInterval: { type: Number, attribute: "poll-interval" },
    presenceInterval: { type: Number, attribute: "presence-interval" },
    pageSize: { type: Number, attribute: "page-size" },
    _online: { state: true },
    _onlineError: { state: true },
    _notifications: { state: true },
    _listError: { state: true },
    _listUpdated: { state: true },
    _selected: { state: true },
    _trace: { state: true },
    _traceError: { state: true },
    _suppressions: { state: true },
    _suppressionError: { state: true },
    _channel: { state: true },
    _contact: { state: true },
    _lift: { state: true },
    _halted: { state: true },
    _announcement: { state: true },
  };

  static styles = css`
    :host {
      --herald-accent: #0a58ca;
      --herald-border: #d0d7de;
      --herald-muted: #57606a;
      --herald-error: #b42318;
      --herald-selected: #eef4ff;
      display: block;
      color: #1f2328;
    }
    :host([hidden]) { display: none; }
    section { margin: 0 0 2rem; }
    h2 { font-size: 1.25rem; margin: 0 0 0.6rem; padding-bottom: 0.3rem; border-bottom: 1px solid var(--herald-border); }
    h3 { font-size: 1.1rem; margin: 1rem 0 0.4rem; }
    input, select, button, textarea { font: inherit; }
    input, select, textarea { padding: 0.25rem 0.4rem; border: 1px solid #8c959f; border-radius: 4px; }
    button { cursor: pointer; padding: 0.25rem 0.7rem; border: 1px solid #8c959f; border-radius: 4px; background: #f6f8fa; color: inherit; }
    button[aria-pressed="true"] { background: var(--herald-accent); border-color: var(--herald-accent); color: #fff; }
    button.primary { background: var(--herald-accent); border-color: var(--herald-accent); color: #fff; }
    :is(input, select, button, textarea, h2, h3):focus-visible { outline: 3px solid var(--herald-accent); outline-offset: 2px; }
    form.lookup { display: flex; flex-wrap: wrap; gap: 0.4rem 0.8rem; align-items: end; margin: 0 0 0.8rem; }
    form.lookup label { display: flex; flex-direction: column; gap: 0.15rem; font-size: 0.9rem; }
    .table-wrap { overflow-x: auto; }
    table { border-collapse: collapse; width: 100%; margin: 0 0 0.8rem; font-size: 0.92rem; }
    caption { text-align: left; font-weight: 600; margin-bottom: 0.3rem; }
    th, td { border: 1px solid var(--herald-border); padding: 0.3rem 0.5rem; text-align: left; vertical-align: top; }
    thead th { background: #f6f8fa; }
    tbody th { font-weight: 600; }
    tr.selected > * { background: var(--herald-selected); }
    td.time, th.time { white-space: nowrap; }
    code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 0.88em; word-break: break-all; }
    .meta { color: var(--herald-muted); font-size: 0.88rem; margin: 0.2rem 0 0.6rem; }
    .summary { font-weight: 600; margin: 0.2rem 0; }
    .verdict { font-weight: 600; }
    .verdict.block, .verdict.skip { color: var(--herald-error); }
    .verdict.pass, .verdict.choose { color: #116329; }
    .error { color: var(--herald-error); }
    .trace { border: 1px solid var(--herald-border); border-radius: 6px; padding: 0.2rem 0.9rem 0.4rem; }
    .trace header { display: flex; justify-content: space-between; align-items: baseline; gap: 1rem; }
    .filter { display: flex; gap: 0.6rem; align-items: center; margin-bottom: 0.6rem; }
    .announcement { min-height: 1.4rem; margin: 0 0 1rem; padding: 0.35rem 0.7rem; border-left: 4px solid var(--herald-accent); background: #f6f8fa; }
    .announcement:empty { visibility: hidden; }
    .halted { margin: 0 0 1rem; padding: 0.35rem 0.7rem; border-left: 4px solid var(--herald-error); background: #fff5f5; }
    dialog { border: 1px solid var(--herald-border); border-radius: 8px; max-width: 34rem; padding: 1rem 1.2rem; }
    dialog::backdrop { background: rgb(0 0 0 / 35%); }
    dialog h2 { border: 0; }
    dialog label { display: block; margin: 0.6rem 0 0.2rem; }
    dialog textarea { width: 100%; box-sizing: border-box; }
    dialog .force { display: flex; gap: 0.4rem; align-items: center; }
    dialog .opt-out { padding: 0.4rem 0.6rem; border-left: 4px solid var(--herald-error); background: #fff5f5; }
    dialog .buttons { display: flex; gap: 0.6rem; justify-content: flex-end; margin-top: 0.9rem; }
  `;

  constructor() {
    super();
    this.tokenProvider = null;
    this.person = "";
    this.limit = 20;
    this.pollInterval = 3000;
    this.presenceInterval = 5000;
    this.pageSize = 100;
    // What each section shows is its last good answer; its error, a failure {text, at, reported}
    // (null: the last read succeeded), is shown beside it, or alone when there is nothing to show.
    this._online = null;
    this._onlineError = null;
    this._notifications = null;
    this._listError = null;
    this._listUpdated = null;
    this._selected = null; // {identifier, userId}
    this._trace = null;
    this._traceError = null;
    this._suppressions = null;
    this._suppressionError = null;
    this._channel = "";
    this._contact = ""; // a contact looked up on the suppression list ("" = the list)
    this._onlinePages = 1; // pages of who is online shown, and read again
    this._suppressionPages = 1;
    this._lift = null; // {id, entry, busy, error, needsForce}
    this._lifts = 0; // lift dialogs opened: each one's form is its own
    this._halted = null; // {status, text}: Herald refused the token, the feeds are stopped
    this._reported = false; // a herald-error was dispatched, and not followed by herald-recovered
    this._announcement = "";
    this._client = null;
    this._timers = {};
    this._generation = 0;
    this._seq = { online: 0, list: 0, trace: 0, suppressions: 0 }; // each feed's latest read
    this._pending = {}; // each feed's latest read (a promise)
    this._onVisibility = () => this._schedule();
  }

  get strings() {
    return STRINGS;
  }

  connectedCallback() {
    super.connectedCallback();
    document.addEventListener("visibilitychange", this._onVisibility);
    this._schedule();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    document.removeEventListener("visibilitychange", this._onVisibility);
    this._stopTimers();
  }

  willUpdate(changed) {
    if (changed.has("apiUrl") || changed.has("tokenProvider")) {
      // Another Herald or another operator (or signed out): nothing read before is shown, nothing
      // asked before is kept (the person, the contact, the channel, an open lift), the feeds start
      // again (a stop after a refused token ends here).
      const hadClient = Boolean(this._client);
      this._generation++;
      this._client = this.apiUrl && this.tokenProvider ? new HeraldClient(this.apiUrl, this.tokenProvider) : null;
      this._online = null;
      this._onlinePages = this._suppressionPages = 1;
      this._notifications = null;
      this._listUpdated = null;
      this._trace = null;
      this._selected = null;
      this._suppressions = null;
      this._onlineError = this._listError = this._traceError = this._suppressionError = null;
      this._halted = null;
      this._reported = false;
      this._channel = "";
      this._contact = "";
      this._announcement = "";
      if (hadClient && !changed.has("person")) this.person = "";
      if (this._lift) {
        this._lift = null;
        this.renderRoot?.querySelector?.("dialog")?.close();
      }
      for (const form of this.renderRoot?.querySelectorAll?.("form") ?? []) form.reset();
      this._schedule();
    } else if (changed.has("person") && changed.get("person") !== undefined) {
      this._notifications = null;
      this._listError = null;
      this._listUpdated = null;
      this._schedule(["notifications"]);
    }
  }

  // -- reading, and polling while the page is visible ------------------------------------------

  _stopTimers() {
    for (const timer of Object.values(this._timers)) clearTimeout(timer);
    this._timers = {};
  }

  /** Whether the feeds may read: a client, on the page, the page shown, the token not refused. */
  get _live() {
    return Boolean(this._client) && this.isConnected && !document.hidden && !this._halted;
  }

  /** (Re)starts the feeds (all by default) with a read at once, unless there is no client, the
   *  page is hidden or Herald refused the token: then every feed stops until that changes. */
  _schedule(names = ["presence", "notifications"]) {
    const feeds = {
      presence: [this.presenceInterval, () => this.refreshOnline()],
      notifications: [this.pollInterval, () => this.refreshNotifications()],
    };
    if (!this._live) {
      this._stopTimers();
      return;
    }
    for (const name of names) {
      clearTimeout(this._timers[name]);
      this._loop(name, ...feeds[name]);
    }
    if (this._suppressions === null) this.refreshSuppressions();
  }

  async _loop(name, every, read) {
    await read();
    if (!this._live) return;
    clearTimeout(this._timers[name]);
    this._timers[name] = setTimeout(() => this._loop(name, every, read), every);
  }

  /** "Try again": reads again after Herald refused the token, with a token the provider is asked
   *  to give anew (`{refresh: true}`: a provider that caches its token drops it). */
  async resume() {
    const halted = this._halted;
    if (!this._client || !halted) return;
    const generation = this._generation;
    try {
      await this._client.token({ refresh: true });
    } catch (error) {
      if (generation !== this._generation) return;
      // still no token: stopped as before, and "Try again" asks for one again
      this._halted = { status: halted.status, text: this._explain(error) };
      this._report(error);
      return;
    }
    if (generation !== this._generation || this._halted !== halted) return;
    this._halted = null;
    this._schedule();
    if (this._suppressions !== null && this._suppressionError) this.refreshSuppressions();
    await this.updateComplete;
    this.renderRoot.querySelector("#online-heading")?.focus();
  }

  /** Starts `read(seq)` as `feed`'s latest read: an answer is applied only while `seq` is the
   *  feed's latest (an older answer landing after a newer one is dropped). */
  _track(feed, read) {
    const seq = ++this._seq[feed];
    const promise = read(seq);
    this._pending[feed] = promise;
    return promise;
  }

  /** Waits until `feed`'s latest read, and any that started meanwhile, are done. */
  async _settled(feed) {
    let promise;
    do {
      promise = this._pending[feed];
      await promise;
    } while (promise !== this._pending[feed]);
  }

  async _read(path, generation = this._generation) {
    const answer = await this._client.get(path);
    if (generation !== this._generation) throw new StaleAnswer();
    return answer;
  }

  /** The first `pages` pages of a listing (the API's `next_cursor`); `more`: the listing goes on. */
  async _readPages(path, field, pages) {
    const generation = this._generation;
    const separator = path.includes("?") ? "&" : "?";
    let answer = null;
    let items = [];
    let cursor = null;
    for (let page = 0; page < pages && (page === 0 || cursor); page++) {
      const query = `limit=${this.pageSize}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`;
      answer = await this._read(`${path}${separator}${query}`, generation);
      items = items.concat(answer[field]);
      cursor = answer.next_cursor ?? null;
    }
    return { ...answer, [field]: items, more: Boolean(cursor) };
  }

  /** Who is online now (`GET /v1/admin/presence`), the pages shown. */
  refreshOnline() {
    if (!this._client) return Promise.resolve();
    return this._track("online", async (seq) => {
      try {
        const online = await this._readPages("/v1/admin/presence", "people", this._onlinePages);
        if (seq !== this._seq.online) return; // a later read (another page count) answers
        // Said only when the whole list is shown, before and now: a page shows the first people in
        // the table's order, and someone leaving brings the next one in, who was online already.
        const whole = this._online && !this._online.more && !online.more;
        const before = whole ? new Set(this._online.people.map((p) => p.user_id)) : null;
        const now = new Set(online.people.map((p) => p.user_id));
        if (before) {
          const changes = [
            ...[...now].filter((user) => !before.has(user)).map(STRINGS.online.came),
            ...[...before].filter((user) => !now.has(user)).map(STRINGS.online.left),
          ];
          if (changes.length) this._announce(changes.join(" "));
        }
        if (!same(this._online, online)) this._online = online;
        this._succeeded("_onlineError");
      } catch (error) {
        if (error instanceof StaleAnswer || seq !== this._seq.online) return;
        this._failed("_onlineError", error);
      }
    });
  }

  /** The person's recent notifications and, when one is selected, its trace (kept, not flickered). */
  async refreshNotifications() {
    if (!this._client) return;
    const reads = [];
    const person = this.person;
    if (person) reads.push(this._readList(person));
    if (this._selected) reads.push(this._readTrace(this._selected));
    await Promise.all(reads);
  }

  _readList(person) {
    return this._track("list", async (seq) => {
      const current = () => seq === this._seq.list && person === this.person;
      try {
        const path = `/v1/admin/users/${encodeURIComponent(person)}/notifications?limit=${this.limit}`;
        const answer = await this._read(path);
        if (!current()) return;
        const list = answer.notifications;
        if (this._notifications && this._notifications.user_id === person) {
          const known = new Set(this._notifications.items.map((n) => n.notification_id));
          const arrived = list.filter((n) => !known.has(n.notification_id)).length;
          if (arrived) this._announce(STRINGS.notifications.arrived(arrived, person));
        }
        if (!this._notifications || this._notifications.user_id !== person || !same(this._notifications.items, list)) {
          this._notifications = { user_id: person, items: list };
        }
        this._listUpdated = new Date().toISOString();
        this._succeeded("_listError");
      } catch (error) {
        if (error instanceof StaleAnswer || !current()) return;
        if (error instanceof HeraldApiError && error.status === 404) this._notifications = null;
        this._failed("_listError", error);
      }
    });
  }

  _readTrace(selected) {
    const query = selected.userId ? `?user_id=${encodeURIComponent(selected.userId)}` : "";
    return this._track("trace", async (seq) => {
      const current = () => seq === this._seq.trace && selected === this._selected;
      try {
        const trace = await this._read(`/v1/admin/notifications/${encodeURIComponent(selected.identifier)}${query}`);
        if (!current()) return;
        if (!same(this._trace, trace)) this._trace = trace;
        this._succeeded("_traceError");
      } catch (error) {
        if (error instanceof StaleAnswer || !current()) return;
        if (error instanceof HeraldApiError && error.status === 404) {
          // not (or no longer) on record: the trace shown before goes
          this._trace = null;
          this._traceError = this._failure(this._traceError, STRINGS.trace.notFound(selected.identifier), false);
          this._recovered();
        } else {
          this._failed("_traceError", error); // the trace shown stays, with a note
        }
      }
    });
  }

  /** The suppression list (`GET /v1/admin/suppressions`): the pages shown of the chosen channel's
   *  (or every channel's), read in the table's order and shown newest first; or the entry of the
   *  contact looked up. */
  refreshSuppressions() {
    if (!this._client) return Promise.resolve();
    const view = { channel: this._channel, contact: this._contact };
    return this._track("suppressions", async (seq) => {
      const current = () =>
        seq === this._seq.suppressions && view.channel === this._channel && view.contact === this._contact;
      try {
        let answer;
        if (view.contact) {
          answer = await this._read(`/v1/admin/suppressions?contact=${encodeURIComponent(view.contact)}`);
          answer.more = false;
        } else {
          const path = `/v1/admin/suppressions${view.channel ? `?channel=${view.channel}` : ""}`;
          answer = await this._readPages(path, "entries", this._suppressionPages);
          // The API pages a Scan (table order), each page newest first: what is shown is sorted
          // newest first, which is the list's order only once the whole list is shown.
          answer.entries.sort((a, b) => (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0));
        }
        if (!current()) return;
        this._suppressions = { ...view, entries: answer.entries, more: answer.more };
        this._succeeded("_suppressionError");
      } catch (error) {
        if (error instanceof StaleAnswer || !current()) return;
        if (error instanceof HeraldApiError && error.status === 422) {
          // not a contact: Herald's answer to what was typed, not a failure of Herald
          this._suppressions = null;
          this._suppressionError = this._failure(this._suppressionError, error.message, false);
          this._recovered();
        } else {
          this._failed("_suppressionError", error);
        }
      }
    });
  }

  /** Shows a person's recent notifications (and keeps reading them while the page is visible). */
  showPerson(userId) {
    this.person = String(userId ?? "").trim(); // willUpdate reads them at once, then keeps reading
  }

  /** Shows the trace of one notification: its id, or an event id (with the member's user id for an
   *  audience's event). */
  showTrace(identifier, userId = "") {
    this._selected = { identifier: String(identifier).trim(), userId: String(userId ?? "").trim() };
    this._trace = null;
    this._traceError = null;
    this._readTrace(this._selected).then(() =>
      this.updateComplete.then(() => this.renderRoot.querySelector("#trace-heading")?.focus()),
    );
  }

  closeTrace() {
    const id = this._trace?.notification_id;
    this._selected = null;
    this._trace = null;
    this._traceError = null;
    this._seq.trace++; // a read under way answers nobody
    this._recovered();
    this.updateComplete.then(() => {
      const button = [...this.renderRoot.querySelectorAll("button[data-notification-id]")].find(
        (candidate) => candidate.dataset.notificationId === id,
      );
      (button ?? this.renderRoot.querySelector("#notifications-heading"))?.focus();
    });
  }

  // -- lifting a suppression ---------------------------------------------------------------------

  _openLift(entry) {
    if (this._lift?.busy) return;
    this._lift = { id: ++this._lifts, entry, busy: false, error: "", needsForce: false };
    this.updateComplete.then(() => {
      const dialog = this.renderRoot.querySelector("dialog");
      if (!dialog.open) dialog.showModal();
      dialog.querySelector("textarea")?.focus();
    });
  }

  /** Cancel, Escape: closes the dialog, unless a lift is under way (its answer comes first). */
  _closeLift() {
    const lift = this._lift;
    if (!lift || lift.busy) return;
    this._lift = null;
    this.renderRoot.querySelector("dialog")?.close();
    this._recovered();
    this._focusLift([lift.entry.address]);
  }

  /** The dialog closed by the browser itself (a repeated Escape): the lift it showed is over; an
   *  answer still to come for it is said, never applied to another dialog. */
  _dialogClosed(event) {
    if (event.target.open || !this._lift) return;
    const address = this._lift.entry.address;
    this._lift = null;
    this._recovered();
    this._focusLift([address]);
  }

  async _submitLift(event) {
    event.preventDefault();
    const form = event.target;
    const lift = this._lift;
    if (!lift || lift.busy || !form.reportValidity()) return;
    const t = STRINGS.suppressions;
    const who = lift.entry.contact || lift.entry.address;
    const address = lift.entry.address;
    const body = {
      contact: address, // the entry's key names it, whatever its channel (tokens too)
      why: form.elements.namedItem("why").value.trim(),
      force: Boolean(form.elements.namedItem("force")?.checked),
    };
    const generation = this._generation;
    // the entries shown after this one, then those before it (nearest first): where the focus goes
    // when it is gone from the list
    const shown = (this._suppressions?.entries ?? []).map((e) => e.address);
    const at = shown.indexOf(address);
    const focusOrder = [address, ...shown.slice(at + 1), ...shown.slice(0, Math.max(at, 0)).reverse()];
    const busy = { ...lift, busy: true, error: "" };
    this._lift = busy;
    let answer = null;
    let failure = null;
    try {
      answer = await this._client.post("/v1/admin/suppressions/lift", body);
    } catch (error) {
      failure = error;
    }
    if (generation !== this._generation) return; // signed out, or another Herald: nothing to say
    // The answer is this dialog's only while it still shows this lift, untouched: never another
    // entry's dialog opened meanwhile (its reason must not lift this one).
    const mine = this._lift === busy;
    const ownOptOut = failure instanceof HeraldApiError && failure.code === "consent_required";
    if (mine && failure && ownOptOut && !body.force) {
      // Herald's answer for the person's own STOP: only `force` lifts it
      this._lift = { ...busy, busy: false, needsForce: true, error: failure.message };
      this.updateComplete.then(() => this.renderRoot.querySelector("dialog input[name=force]")?.focus());
      return;
    }
    const settled = !failure || (failure instanceof HeraldApiError && [404, 409].includes(failure.status));
    if (mine && !settled) {
      this._lift = { ...busy, busy: false, error: this._explain(failure) };
      this._report(failure);
      this.updateComplete.then(() => this.renderRoot.querySelector("dialog button[type=submit]")?.focus());
      return;
    }
    if (mine) {
      this._lift = null;
      this.renderRoot.querySelector("dialog")?.close();
    }
    if (!failure) {
      this._announce(t.lifted(answer, who));
    } else if (!settled) {
      // (not this dialog's any more: an error for it is said, not shown in another one)
      this._announce(t.notLifted(who, this._explain(failure)));
      this._report(failure);
    } else if (failure.status === 404) {
      this._announce(t.notSuppressed(who));
    } else {
      this._announce(mine ? t.changed(failure.message) : t.notLifted(who, failure.message));
    }
    this.refreshSuppressions();
    await this._settled("suppressions");
    if (mine && generation === this._generation && !this._lift) this._focusLift(focusOrder);
  }

  /** Focuses the Lift button of the first of `addresses` listed, else the list's heading. */
  async _focusLift(addresses) {
    await this.updateComplete;
    const buttons = [...this.renderRoot.querySelectorAll("section.suppression button[data-address]")];
    for (const address of addresses) {
      const button = buttons.find((candidate) => candidate.dataset.address === address);
      if (button) return button.focus();
    }
    this.renderRoot.querySelector("#suppressions-heading")?.focus();
  }

  // -- helpers -----------------------------------------------------------------------------------

  /** What to say of `error`; Herald refusing the token (401, 403) stops the feeds. */
  _explain(error) {
    let text = STRINGS.failed(error?.message ?? String(error));
    if (error instanceof HeraldApiError && error.status === 403) text = STRINGS.forbidden;
    if (error instanceof HeraldApiError && error.status === 401) text = STRINGS.unauthorized;
    if (error instanceof HeraldApiError && (error.status === 401 || error.status === 403)) this._halt(error, text);
    return text;
  }

  _halt(error, text) {
    this._stopTimers();
    if (this._halted?.text === text) return;
    this._halted = { status: error instanceof HeraldApiError ? error.status : 0, text };
  }

  /** A failure record: `previous` kept while the text is the same (its time is the first failure's). */
  _failure(previous, text, reported) {
    return previous?.text === text ? previous : { text, at: new Date().toISOString(), reported };
  }

  /** `field`'s read failed: the note beside what is shown, and `herald-error` when the text is new
   *  (a poll failing again the same way says nothing more). */
  _failed(field, error) {
    const text = this._explain(error);
    const previous = this[field];
    if (previous?.text === text && previous.reported) return;
    this[field] = { text, at: new Date().toISOString(), reported: true };
    this._report(error);
  }

  _succeeded(field) {
    if (this[field]) this[field] = null;
    this._recovered();
  }

  _report(error) {
    this._reported = true;
    this.dispatchEvent(new CustomEvent("herald-error", { detail: error, bubbles: true, composed: true }));
  }

  /** Every failure reported has cleared: `herald-recovered`, once. */
  _recovered() {
    if (!this._reported || this._halted) return;
    const failures = [this._onlineError, this._listError, this._traceError, this._suppressionError];
    if (failures.some((failure) => failure?.reported) || this._lift?.error) return;
    this._reported = false;
    this.dispatchEvent(new CustomEvent("herald-recovered", { bubbles: true, composed: true }));
  }

  _announce(text) {
    // The same text twice in a row would not be announced again: clear it first.
    this._announcement = "";
    requestAnimationFrame(() => {
      this._announcement = text;
    });
  }

  /** A section's failure: alone (an alert) when nothing is shown, else a note beside what is. */
  _renderFailure(failure, shown) {
    if (!failure) return nothing;
    if (!shown) return html`<p class="error" role="alert">${failure.text}</p>`;
    return html`<p class="error stale" role="status">${STRINGS.stale(formatUtc(failure.at))} ${failure.text}</p>`;
  }

  /** What a section with nothing to show yet says: loading, or that the reading stopped. */
  _placeholder() {
    return html`<p>${this._halted ? STRINGS.paused : STRINGS.loading}</p>`;
  }

  // -- rendering ---------------------------------------------------------------------------------

  render() {
    return html`
      <p class="announcement" role="status" aria-live="polite" aria-atomic="true" aria-label=${STRINGS.status}>${
        this._announcement
      }</p>
      ${this._halted
        ? html`<p class="halted">
            ${STRINGS.halted} <button type="button" @click=${this.resume}>${STRINGS.retry}</button>
          </p>`
        : nothing}
      ${this._renderOnline()} ${this._renderNotifications()} ${this._renderSuppressions()} ${this._renderLift()}
    `;
  }

  _renderOnline() {
    const t = STRINGS.online;
    const online = this._online;
    let body;
    if (!online) body = this._onlineError ? nothing : this._placeholder();
    else if (!online.people.length) body = html`<p>${t.nobody}</p>`;
    else {
      body = html`<div class="table-wrap">
        <table>
          <caption>${t.caption(online.people.length, hours(online.max_age_seconds), online.more)}</caption>
          <thead>
            <tr><th scope="col">${t.person}</th><th scope="col">${t.confirmed}</th><th scope="col">${t.actions}</th></tr>
          </thead>
          <tbody>
            ${repeat(
              online.people,
              (p) => p.user_id,
              (p) => html`<tr data-user-id=${p.user_id}>
                <th scope="row">${p.user_id}</th>
                <td class="time"><time datetime=${p.confirmed_at}>${formatUtc(p.confirmed_at)}</time></td>
                <td><button type="button" aria-label=${t.showLabel(p.user_id)} @click=${() => this.showPerson(p.user_id)}>
                  ${t.show}
                </button></td>
              </tr>`,
            )}
          </tbody>
        </table>
      </div>`;
    }
    return html`<section class="online" aria-labelledby="online-heading">
      <h2 id="online-heading" tabindex="-1">${t.heading}</h2>
      ${this._renderFailure(this._onlineError, Boolean(online))} ${body}
      ${online?.more
        ? html`<p><button type="button" @click=${this._moreOnline}>${t.more}</button></p>`
        : nothing}
      ${online ? html`<p class="meta">${t.checked(formatUtc(online.checked_at))}</p>` : nothing}
    </section>`;
  }

  async _moreOnline() {
    const before = new Set((this._online?.people ?? []).map((p) => p.user_id));
    this._onlinePages++;
    this.refreshOnline();
    await this._settled("online");
    const fresh = this._online?.people.find((p) => !before.has(p.user_id));
    this._focusFirstNew("section.online tr[data-user-id]", "userId", fresh?.user_id, "#online-heading");
  }

  /** After "more": the focus goes to the first row not shown before (its `button`), else to the
   *  section's heading when the "more" button it was on is gone. */
  async _focusFirstNew(rows, field, key, heading, button = "button") {
    await this.updateComplete;
    const row = key === undefined ? null : [...this.renderRoot.querySelectorAll(rows)].find((r) => r.dataset[field] === key);
    const target = row?.querySelector(button);
    if (target) target.focus();
    else if (!this.renderRoot.activeElement) this.renderRoot.querySelector(heading)?.focus();
  }

  _renderNotifications() {
    const t = STRINGS.notifications;
    return html`<section class="notifications" aria-labelledby="notifications-heading">
      <h2 id="notifications-heading" tabindex="-1">${t.heading}</h2>
      <form class="lookup" role="search" aria-label=${t.personButton} @submit=${this._submitPerson}>
        <label>${t.personLabel}<input name="person" autocomplete="off" spellcheck="false" required .value=${this.person ?? ""} /></label>
        <button type="submit">${t.personButton}</button>
      </form>
      <form class="lookup" role="search" aria-label=${t.idButton} @submit=${this._submitIdentifier}>
        <label>${t.idLabel}<input name="identifier" autocomplete="off" spellcheck="false" required /></label>
        <label>${t.memberLabel}<input name="member" autocomplete="off" spellcheck="false" /></label>
        <button type="submit">${t.idButton}</button>
      </form>
      ${this._renderList()} ${this._renderTrace()}
    </section>`;
  }

  _submitPerson(event) {
    event.preventDefault();
    const value = event.target.elements.namedItem("person").value.trim();
    if (value) this.showPerson(value);
  }

  _submitIdentifier(event) {
    event.preventDefault();
    const form = event.target.elements;
    const identifier = form.namedItem("identifier").value.trim();
    if (identifier) this.showTrace(identifier, form.namedItem("member").value);
  }

  _renderList() {
    const t = STRINGS.notifications;
    if (!this.person) return nothing;
    const list = this._notifications?.user_id === this.person ? this._notifications : null;
    const failure = this._renderFailure(this._listError, Boolean(list));
    if (!list) return this._listError ? failure : this._placeholder();
    const meta = html`<p class="meta">
      ${this._listUpdated ? t.updated(formatUtc(this._listUpdated)) : nothing} ${t.live(this.pollInterval / 1000)}
    </p>`;
    if (!list.items.length) return html`${failure}<p>${t.none(list.user_id)}</p>${meta}`;
    const selectedId = this._trace?.notification_id ?? this._selected?.identifier;
    return html`${failure}<div class="table-wrap">
        <table class="recent">
          <caption>${t.caption(list.user_id)}</caption>
          <thead>
            <tr>
              <th scope="col">${t.created}</th>
              <th scope="col">${t.notification}</th>
              <th scope="col">${t.urgency}</th>
              <th scope="col">${t.category}</th>
              <th scope="col">${t.status}</th>
              <th scope="col">${t.channels}</th>
              <th scope="col">${t.person}</th>
              <th scope="col">${t.actions}</th>
            </tr>
          </thead>
          <tbody>
            ${repeat(
              list.items,
              (n) => n.notification_id,
              (n) => {
                const selected = n.notification_id === selectedId || n.event_id === this._selected?.identifier;
                const marks = [n.read_at ? "read" : "", n.acked_at ? "acknowledged" : ""].filter(Boolean);
                return html`<tr class=${selected ? "selected" : ""} data-notification-id=${n.notification_id}>
                  <td class="time"><time datetime=${n.created_at}>${formatUtc(n.created_at)}</time></td>
                  <th scope="row">${n.type}<br /><code>${n.notification_id}</code></th>
                  <td>${n.urgency}</td>
                  <td>${n.category}</td>
                  <td>${n.status}</td>
                  <td>${n.channels.length ? n.channels.map((c) => `${c.channel} ${c.state}`).join(", ") : t.nothing}</td>
                  <td>${marks.length ? marks.join(", ") : t.nothing}</td>
                  <td>
                    <button
                      type="button"
                      data-notification-id=${n.notification_id}
                      aria-pressed=${selected ? "true" : "false"}
                      aria-label=${t.traceLabel(n)}
                      @click=${() => this.showTrace(n.notification_id, n.user_id)}
                    >
                      ${t.trace}
                    </button>
                  </td>
                </tr>`;
              },
            )}
          </tbody>
        </table>
      </div>
      ${meta}`;
  }

  _renderTrace() {
    const t = STRINGS.trace;
    if (!this._selected) return nothing;
    const trace = this._trace;
    const heading = t.heading(trace?.notification_id ?? this._selected.identifier);
    let body;
    if (!trace) body = this._traceError ? this._renderFailure(this._traceError, false) : this._placeholder();
    else body = html`${this._renderFailure(this._traceError, true)} ${this._renderTraceBody(trace)}`;
    return html`<article class="trace" aria-labelledby="trace-heading">
      <header>
        <h3 id="trace-heading" tabindex="-1">${heading}</h3>
        <button type="button" @click=${this.closeTrace}>${t.close}</button>
      </header>
      ${body}
    </article>`;
  }

  _renderTraceBody(trace) {
    const t = STRINGS.trace;
    const marks = Object.entries(t.marks)
      .filter(([field]) => trace[field])
      .map(([field, word]) => `${word} ${formatUtc(trace[field])}`);
    return html`
      <p class="summary">${t.summary(trace, formatUtc(trace.created_at))}</p>
      <p class="meta">${t.ids(trace)}${marks.length ? html`<br />${marks.join(" · ")}` : nothing}</p>
      ${trace.decision.length
        ? html`<div class="table-wrap"><table class="decision">
            <caption>${t.decisionCaption}</caption>
            <thead>
              <tr>
                <th scope="col">${t.step}</th><th scope="col">${t.verdict}</th><th scope="col">${t.rule}</th>
                <th scope="col">${t.channel}</th><th scope="col">${t.reason}</th>
              </tr>
            </thead>
            <tbody>
              ${trace.decision.map(
                (step, index) => html`<tr>
                  <th scope="row">${index + 1}</th>
                  <td class="verdict ${step.verdict}">${step.verdict}</td>
                  <td>${step.rule}</td>
                  <td>${step.channel ?? STRINGS.notifications.nothing}</td>
                  <td>${step.reason}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : html`<p>${t.noDecision}</p>`}
      ${trace.channels.length
        ? html`<div class="table-wrap"><table class="outcomes">
            <caption>${t.outcomesCaption}</caption>
            <thead>
              <tr>
                <th scope="col">${t.channel}</th><th scope="col">${t.outcome}</th><th scope="col">${t.provider}</th>
                <th scope="col">${t.providerId}</th><th scope="col">${t.reason}</th>
              </tr>
            </thead>
            <tbody>
              ${trace.channels.map(
                (c) => html`<tr>
                  <th scope="row">${c.channel}</th>
                  <td>${c.state}</td>
                  <td>${c.provider || STRINGS.notifications.nothing}</td>
                  <td>${c.provider_message_id ? html`<code>${c.provider_message_id}</code>` : STRINGS.notifications.nothing}</td>
                  <td>${c.reason}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : html`<p>${t.noOutcomes}</p>`}
      ${trace.delivery_log.length
        ? html`<div class="table-wrap"><table class="log">
            <caption>${t.logCaption}</caption>
            <thead>
              <tr>
                <th scope="col">${t.time}</th><th scope="col">${t.offset}</th><th scope="col">${t.channel}</th>
                <th scope="col">${t.outcome}</th><th scope="col">${t.provider}</th><th scope="col">${t.details}</th>
              </tr>
            </thead>
            <tbody>
              ${trace.delivery_log.map(
                (entry) => html`<tr>
                  <th scope="row" class="time"><time datetime=${entry.at}>${formatUtc(entry.at)}</time></th>
                  <td class="time">${formatOffset(entry.at, trace.created_at)}</td>
                  <td>${entry.channel}</td>
                  <td>${entry.outcome}</td>
                  <td>${entry.provider ?? STRINGS.notifications.nothing}</td>
                  <td>${[
                    entry.code ? `code=${entry.code}` : "",
                    entry.provider_message_id ? `id=${entry.provider_message_id}` : "",
                    entry.detail ?? "",
                  ]
                    .filter(Boolean)
                    .join(" ")}</td>
                </tr>`,
              )}
            </tbody>
          </table></div>`
        : html`<p>${t.noLog}</p>`}
    `;
  }

  _renderSuppressions() {
    const t = STRINGS.suppressions;
    const list = this._suppressions;
    const entries = list?.entries;
    let body;
    if (!entries) body = this._suppressionError ? nothing : this._placeholder();
    else if (!entries.length) body = html`<p>${list.contact ? t.notFound(list.contact) : t.none}</p>`;
    else {
      body = html`<div class="table-wrap">
        <table class="suppressions">
          <caption>${t.caption(entries.length, list.more)}</caption>
          <thead>
            <tr>
              <th scope="col">${t.contact}</th><th scope="col">${t.channel}</th><th scope="col">${t.reason}</th>
              <th scope="col">${t.source}</th><th scope="col">${t.since}</th><th scope="col">${t.notification}</th>
              <th scope="col">${t.actions}</th>
            </tr>
          </thead>
          <tbody>
            ${repeat(
              entries,
              (e) => e.address,
              (e) => {
                const who = e.contact || e.address;
                return html`<tr data-address=${e.address}>
                  <th scope="row">${e.contact ? e.contact : html`<code>${e.address}</code>`}</th>
                  <td>${e.channel}</td>
                  <td>${e.reason}${e.last_reason && e.last_reason !== e.reason ? `, ${t.then(e.last_reason)}` : ""}</td>
                  <td>${e.source}</td>
                  <td class="time"><time datetime=${e.created_at}>${formatUtc(e.created_at)}</time></td>
                  <td>${e.notification_id
                    ? html`<button type="button" aria-label=${t.traceLabel(e.notification_id)} @click=${() => this.showTrace(e.notification_id)}>
                        <code>${e.notification_id}</code>
                      </button>`
                    : STRINGS.notifications.nothing}</td>
                  <td><button type="button" data-address=${e.address} aria-label=${t.liftLabel(who)} @click=${() => this._openLift(e)}>
                    ${t.lift}
                  </button></td>
                </tr>`;
              },
            )}
          </tbody>
        </table>
      </div>`;
    }
    return html`<section class="suppression" aria-labelledby="suppressions-heading">
      <h2 id="suppressions-heading" tabindex="-1">${t.heading}</h2>
      <div class="filter">
        <label for="channel-filter">${t.filter}</label>
        <select id="channel-filter" @change=${this._filter} ?disabled=${Boolean(this._contact)}>
          <option value="" ?selected=${!this._channel}>${t.all}</option>
          ${CHANNELS.map((c) => html`<option value=${c} ?selected=${this._channel === c}>${t.channelNames[c]}</option>`)}
        </select>
        <button type="button" @click=${() => this.refreshSuppressions()}>${t.reload}</button>
      </div>
      <form class="lookup" role="search" aria-label=${t.find} @submit=${this._findContact}>
        <label>${t.contactLabel}<input name="contact" autocomplete="off" spellcheck="false" required /></label>
        <button type="submit">${t.findButton}</button>
        ${this._contact ? html`<button type="button" @click=${this._showAll}>${t.showAll}</button>` : nothing}
      </form>
      ${this._renderFailure(this._suppressionError, Boolean(entries))} ${body}
      ${list?.more
        ? html`<p class="meta">${t.moreNote}</p>
            <p><button type="button" @click=${this._moreSuppressions}>${t.more}</button></p>`
        : nothing}
    </section>`;
  }

  _filter(event) {
    this._channel = event.target.value;
    this._suppressionPages = 1;
    this._suppressions = null;
    this._suppressionError = null;
    this._recovered();
    this.refreshSuppressions();
  }

  _findContact(event) {
    event.preventDefault();
    const contact = event.target.elements.namedItem("contact").value.trim();
    if (!contact) return;
    this._contact = contact;
    this._suppressions = null;
    this._suppressionError = null;
    this._recovered();
    this.refreshSuppressions();
  }

  _showAll() {
    this._contact = "";
    this._suppressionPages = 1;
    this._suppressions = null;
    this._suppressionError = null;
    this._recovered();
    this.refreshSuppressions();
    this.updateComplete.then(() => this.renderRoot.querySelector("#channel-filter")?.focus());
  }

  async _moreSuppressions() {
    // Shown newest first, the entries read now may come before those shown: the focus goes to the
    // first one not shown before, wherever it is.
    const before = new Set((this._suppressions?.entries ?? []).map((e) => e.address));
    this._suppressionPages++;
    this.refreshSuppressions();
    await this._settled("suppressions");
    const fresh = this._suppressions?.entries.find((e) => !before.has(e.address));
    const rows = "section.suppression tr[data-address]";
    this._focusFirstNew(rows, "address", fresh?.address, "#suppressions-heading", "button[data-address]");
  }

  _renderLift() {
    const t = STRINGS.suppressions;
    const lift = this._lift;
    const who = lift ? lift.entry.contact || lift.entry.address : "";
    // Escape while a lift is under way does nothing (its answer comes first); a form per dialog
    // opened (keyed), so that what was typed for one entry is never sent for another
    return html`<dialog
      aria-labelledby="lift-heading"
      @cancel=${(e) => (e.preventDefault(), this._closeLift())}
      @close=${this._dialogClosed}
    >
      ${lift
        ? keyed(lift.id, html`<form @submit=${this._submitLift} aria-busy=${lift.busy ? "true" : "false"}>
            <h2 id="lift-heading">${t.dialogHeading(who)}</h2>
            <p>${t.dialogText}</p>
            <label for="lift-why">${t.why}</label>
            <textarea id="lift-why" name="why" rows="3" required minlength="3" maxlength="500" ?readonly=${lift.busy}></textarea>
            ${lift.needsForce
              ? html`<p class="opt-out" id="opt-out-note">${t.optOut}</p>
                  <p class="force">
                    <input type="checkbox" id="lift-force" name="force" aria-describedby="opt-out-note" ?disabled=${lift.busy} />
                    <label for="lift-force">${t.force}</label>
                  </p>`
              : nothing}
            ${lift.error ? html`<p class="error" role="alert">${lift.error}</p>` : nothing}
            <div class="buttons">
              <button type="button" @click=${this._closeLift} ?disabled=${lift.busy}>${t.cancel}</button>
              <button type="submit" class="primary" ?disabled=${lift.busy}>${lift.busy ? t.lifting : t.submit}</button>
            </div>
          </form>`)
        : nothing}
    </dialog>`;
  }
}

/** An answer for a console whose configuration changed meanwhile: dropped, never shown. */
class StaleAnswer extends Error {}

customElements.define("herald-console", HeraldConsole);
