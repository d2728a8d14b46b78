// <herald-inbox>: Herald's in-app inbox as a standard Web Component (Lit, no build step).
//
//   <script src="…/pusher-js/dist/web/pusher.min.js"></script>   (pusher-js has no ES module build)
//   <script type="importmap">{"imports": {"lit": …}}</script>      (see README, "Embedding the inbox")
//   <script type="module" src="…/herald-inbox.js"></script>
//   <herald-inbox api-url="https://api.example.com" pusher-key="…" pusher-cluster="eu"></herald-inbox>
//   document.querySelector("herald-inbox").tokenProvider = () => myApp.getAccessToken();
//
// A bell with the person's exact unseen count (GET /v1/me/notifications/count), a list paged by the
// API's cursor (infinite scroll, and a "load more" button for keyboards), mark read, mark all read,
// archive, and live updates: pusher-js on the person's `private-user-<id>` channel, authorized by
// Herald's POST /v1/pusher/auth. Opening a notification reads it, which acknowledges it: a waiting
// escalation (push, then email) ends there. Events: `herald-open` (detail: the item, for deep links
// in `item.data`), `herald-counts` (detail: {unread, unseen}), `herald-error` (detail: the error).

import { LitElement, css, html, nothing } from "lit";
import { HeraldClient, localeOf } from "./herald-client.js";


const MESSAGES = {
  en: {
    bell: (unseen) => (unseen ? `Notifications, ${unseen} unseen` : "Notifications"),
    heading: "Notifications",
    list: "Notification list",
    markAllRead: "Mark all read",
    markRead: "Mark read",
    archive: "Archive",
    archiveLabel: (title) => `Archive: ${title}`,
    markReadLabel: (title) => `Mark read: ${title}`,
    unread: "Unread",
    empty: "You have no notifications.",
    loading: "Loading…",
    loadMore: "Load more",
    end: "That is everything.",
    arrived: (title) => `New notification: ${title}`,
    allRead: "All notifications marked read.",
    archived: (title) => `Archived: ${title}`,
    error: "Notifications are unavailable right now.",
    untitled: "Notification",
    close: "Close notifications",
  },
  es: {
    bell: (unseen) => (unseen ? `Notificaciones, ${unseen} sin ver` : "Notificaciones"),
    heading: "Notificaciones",
    list: "Lista de notificaciones",
    markAllRead: "Marcar todo como leído",
    markRead: "Marcar como leída",
    archive: "Archivar",
    archiveLabel: (title) => `Archivar: ${title}`,
    markReadLabel: (title) => `Marcar como leída: ${title}`,
    unread: "No leída",
    empty: "No tienes notificaciones.",
    loading: "Cargando…",
    loadMore: "Cargar más",
    end: "No hay más.",
    arrived: (title) => `Nueva notificación: ${title}`,
    allRead: "Todas las notificaciones marcadas como leídas.",
    archived: (title) => `Archivada: ${title}`,
    error: "Las notificaciones no están disponibles ahora.",
    untitled: "Notificación",
    close: "Cerrar notificaciones",
  },
  pt: {
    bell: (unseen) => (unseen ? `Notificações, ${unseen} por ver` : "Notificações"),
    heading: "Notificações",
    list: "Lista de notificações",
    markAllRead: "Marcar tudo como lido",
    markRead: "Marcar como lida",
    archive: "Arquivar",
    archiveLabel: (title) => `Arquivar: ${title}`,
    markReadLabel: (title) => `Marcar como lida: ${title}`,
    unread: "Por ler",
    empty: "Não tem notificações.",
    loading: "A carregar…",
    loadMore: "Carregar mais",
    end: "Não há mais.",
    arrived: (title) => `Nova notificação: ${title}`,
    allRead: "Todas as notificações marcadas como lidas.",
    archived: (title) => `Arquivada: ${title}`,
    error: "As notificações não estão disponíveis de momento.",
    untitled: "Notificação",
    close: "Fechar notificações",
  },
  "pt-BR": {
    bell: (unseen) => (unseen ? `Notificações, ${unseen} não vistas` : "Notificações"),
    heading: "Notificações",
    list: "Lista de notificações",
    markAllRead: "Marcar tudo como lido",
    markRead: "Marcar como lida",
    archive: "Arquivar",
    archiveLabel: (title) => `Arquivar: ${title}`,
    markReadLabel: (title) => `Marcar como lida: ${title}`,
    unread: "Não lida",
    empty: "Você não tem notificações.",
    loading: "Carregando…",
    loadMore: "Carregar mais",
    end: "Não há mais nada.",
    arrived: (title) => `Nova notificação: ${title}`,
    allRead: "Todas as notificações marcadas como lidas.",
    archived: (title) => `Arquivada: ${title}`,
    error: "As notificações não estão disponíveis no momento.",
    untitled: "Notificação",
    close: "Fechar notificações",
  },
};

export class HeraldInbox extends LitElement {
  static properties = {
    apiUrl: { type: String, attribute: "api-url" },
    pusherKey: { type: String, attribute: "pusher-key" },
    pusherCluster: { type: String, attribute: "pusher-cluster" },
    pusherHost: { type: String, attribute: "pusher-host" },
    pusherPort: { type: Number, attribute: "pusher-port" },
    pusherTls: { type: Boolean, attribute: "pusher-tls" },
    userId: { type: String, attribute: "user-id" },
    locale: { type: String },
    pageSize: { type: Number, attribute: "page-size" },
    open: { type: Boolean, reflect: true },
    tokenProvider: { attribute: false },
    _items: { state: true },
    _counts: { state: true },
    _cursor: { state: true },
    _loading: { state: true },
    _error: { state: true },
    _expanded: { state: true },
    _announcement: { state: true },
  };

  static styles = css`
    :host {
      --herald-accent: #0a58ca;
      --herald-badge: #b42318;
      --herald-border: #d0d7de;
      --herald-muted: #57606a;
      --herald-unread: #eef4ff;
      display: inline-block;
      position: relative;
      font: inherit;
      color: #1f2328;
    }
    :host([hidden]) { display: none; }
    button { font: inherit; cursor: pointer; }
    button:focus-visible { outline: 3px solid var(--herald-accent); outline-offset: 2px; }
    .bell {
      position: relative; display: inline-flex; align-items: center; justify-content: center;
      width: 2.75rem; height: 2.75rem; border: 1px solid var(--herald-border); border-radius: 50%;
      background: #fff; color: inherit;
    }
    .bell svg { width: 1.4rem; height: 1.4rem; }
    .badge {
      position: absolute; top: -0.3rem; right: -0.3rem; min-width: 1.3rem; padding: 0 0.3rem;
      border-radius: 0.65rem; background: var(--herald-badge); color: #fff; font-size: 0.75rem;
      font-weight: 700; line-height: 1.3rem; text-align: center; box-sizing: border-box;
    }
    .panel {
      position: absolute; right: 0; top: calc(100% + 0.5rem); z-index: 10; width: min(26rem, 92vw);
      background: #fff; border: 1px solid var(--herald-border); border-radius: 8px;
      box-shadow: 0 8px 24px rgb(0 0 0 / 15%);
    }
    :host([inline]) .panel { position: static; margin-top: 0.5rem; box-shadow: none; }
    header {
      display: flex; align-items: center; justify-content: space-between; gap: 0.5rem;
      padding: 0.6rem 0.8rem; border-bottom: 1px solid var(--herald-border);
    }
    h2 { font-size: 1rem; margin: 0; }
    .link { border: 0; background: none; color: var(--herald-accent); padding: 0.2rem 0.3rem; }
    .link[aria-disabled="true"] { color: var(--herald-muted); cursor: default; }
    .scroller { max-height: 24rem; overflow-y: auto; }
    ul { list-style: none; margin: 0; padding: 0; }
    li { border-bottom: 1px solid var(--herald-border); padding: 0.6rem 0.8rem; }
    li.unread { background: var(--herald-unread); }
    .open {
      display: block; width: 100%; text-align: left; border: 0; background: none; padding: 0;
      color: inherit;
    }
    .title { font-weight: 600; }
    .unread-dot {
      display: inline-block; width: 0.55rem; height: 0.55rem; margin-right: 0.4rem; border-radius: 50%;
      background: var(--herald-accent); vertical-align: middle;
    }
    .body { display: block; margin-top: 0.2rem; }
    .body.clamped { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    .meta { display: block; color: var(--herald-muted); font-size: 0.8rem; margin-top: 0.2rem; }
    .actions { display: flex; gap: 0.5rem; margin-top: 0.35rem; }
    .actions button {
      border: 1px solid var(--herald-border); border-radius: 4px; background: #fff; padding: 0.1rem 0.5rem;
      font-size: 0.85rem; color: inherit;
    }
    .footer { padding: 0.6rem 0.8rem; color: var(--herald-muted); font-size: 0.9rem; }
    .error { color: var(--herald-badge); }
    .visually-hidden {
      position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden;
      clip: rect(0 0 0 0); white-space: nowrap; border: 0;
    }
  `;

  constructor() {
    super();
    this.pusherCluster = "mt1";
    this.pageSize = 20;
    this.open = false;
    this.tokenProvider = null;
    this._items = [];
    this._counts = null;
    this._cursor = undefined; // undefined: not loaded yet; null: the last page is loaded
    this._loading = false;
    this._error = "";
    this._expanded = new Set();
    this._announcement = "";
    this._client = null;
    this._pusher = null;
    this._observer = null;
    this._generation = 0;
  }

  get messages() {
    return MESSAGES[localeOf(this)];
  }

  /** The counts last read from Herald's API (`{unread, unseen}`), or null before the first. */
  get counts() {
    return this._counts;
  }

  /** The items shown, newest first (the API's items; live ones until the API is read again). */
  get items() {
    return [...this._items];
  }

  connectedCallback() {
    super.connectedCallback();
    this._onKeydown = (event) => {
      if (event.key === "Escape" && this.open) {
        this.open = false;
        this.renderRoot.querySelector(".bell")?.focus();
      }
    };
    this.addEventListener("keydown", this._onKeydown);
    if (this._client) this._start();
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    this.removeEventListener("keydown", this._onKeydown);
    this._stop();
  }

  willUpdate(changed) {
    const config = ["apiUrl", "tokenProvider", "pusherKey", "pusherHost", "pusherPort", "userId"];
    if (config.some((name) => changed.has(name))) {
      this._stop();
      this._client = this.apiUrl && this.tokenProvider ? new HeraldClient(this.apiUrl, this.tokenProvider) : null;
      if (this._client && this.isConnected) this._start();
    }
  }

  updated() {
    const sentinel = this.renderRoot.querySelector(".more");
    const scroller = this.renderRoot.querySelector(".scroller");
    if (!sentinel || !scroller) {
      this._observer?.disconnect();
      this._observer = null;
      return;
    }
    if (this._observer?.root !== scroller) {
      this._observer?.disconnect();
      this._observer = new IntersectionObserver(
        (entries) => entries.some((entry) => entry.isIntersecting) && this.loadMore(),
        { root: scroller, rootMargin: "0px 0px 80px 0px" },
      );
    }
    this._observer.disconnect();
    this._observer.observe(sentinel);
  }

  /** Reads everything again from Herald's API: the counts and the first page. */
  async refresh() {
    if (!this._client) return;
    const generation = ++this._generation;
    this._loading = true;
    try {
      const [counts, page] = await Promise.all([
        this._client.get("/v1/me/notifications/count"),
        this._client.get(`/v1/me/notifications?limit=${this.pageSize}`),
      ]);
      if (generation !== this._generation) return;
      this._setCounts(counts);
      this._items = page.items;
      this._cursor = page.next_cursor;
      this._error = "";
    } catch (error) {
      this._fail(error);
    } finally {
      if (generation === this._generation) this._loading = false;
    }
  }

  /** The next page (the API's cursor); nothing once the last page is loaded. */
  async loadMore() {
    if (!this._client || this._loading || !this._cursor) return;
    const generation = this._generation;
    this._loading = true;
    try {
      const page = await this._client.get(
        `/v1/me/notifications?limit=${this.pageSize}&cursor=${encodeURIComponent(this._cursor)}`,
      );
      if (generation !== this._generation) return;
      const known = new Set(this._items.map((item) => item.id));
      this._items = [...this._items, ...page.items.filter((item) => !known.has(item.id))];
      this._cursor = page.next_cursor;
    } catch (error) {
      this._fail(error);
    } finally {
      if (generation === this._generation) this._loading = false;
    }
  }

  /** Opens a notification: shows it whole and reads it, which acknowledges it (its escalation ends). */
  async openItem(id) {
    const item = this._items.find((candidate) => candidate.id === id);
    if (!item) return;
    this._expanded = new Set(this._expanded).add(id);
    this.dispatchEvent(new CustomEvent("herald-open", { detail: item, bubbles: true, composed: true }));
    if (!item.read_at) await this.markRead(id);
  }

  async markRead(id) {
    await this._act(() => this._client.post(`/v1/me/notifications/${encodeURIComponent(id)}/read`), (updated) =>
      this._replace(updated),
    );
  }

  async archive(id) {
    const item = this._items.find((candidate) => candidate.id === id);
    await this._act(
      () => this._client.post(`/v1/me/notifications/${encodeURIComponent(id)}/archive`),
      () => {
        this._items = this._items.filter((candidate) => candidate.id !== id);
        this._announce(this.messages.archived(this._title(item)));
        this.renderRoot.querySelector(".bell")?.focus();
      },
    );
  }

  async markAllRead() {
    await this._act(
      () => this._client.post("/v1/me/notifications/read-all"),
      ({ read_all_at: at }) => {
        this._items = this._items.map((item) =>
          item.read_at || new Date(item.created_at) > new Date(at) ? item : { ...item, read_at: at, seen_at: item.seen_at ?? at },
        );
        this._announce(this.messages.allRead);
      },
    );
  }

  async _act(call, apply) {
    if (!this._client) return;
    try {
      apply(await call());
      this._setCounts(await this._client.get("/v1/me/notifications/count"));
    } catch (error) {
      this._fail(error);
    }
  }

  async _start() {
    const client = this._client;
    this._items = [];
    this._counts = null;
    this._cursor = undefined;
    await this.refresh();
    if (client === this._client) await this._listen();
  }

  _stop() {
    this._generation++;
    this._pusher?.disconnect();
    this._pusher = null;
    delete this.dataset.live;
    this._observer?.disconnect();
    this._observer = null;
  }

  async _listen() {
    const Pusher = window.Pusher;
    if (!this._client || !this.pusherKey) return;
    if (!Pusher) {
      this._fail(new Error("pusher-js is not loaded: no live updates"), { shown: false });
      return;
    }
    const client = this._client;
    let userId = this.userId;
    try {
      userId ||= await client.subject();
    } catch (error) {
      this._fail(error);
      return;
    }
    if (client !== this._client) return;
    const options = {
      cluster: this.pusherCluster || "mt1",
      channelAuthorization: {
        endpoint: `${client.apiUrl}/v1/pusher/auth`,
        transport: "ajax",
        customHandler: (params, callback) =>
          client.authorizeChannel(params).then(
            (auth) => callback(null, auth),
            (error) => callback(error, null),
          ),
      },
    };
    if (this.pusherHost) {
      Object.assign(options, {
        wsHost: this.pusherHost,
        wsPort: this.pusherPort || (this.pusherTls ? 443 : 80),
        wssPort: this.pusherPort || 443,
        forceTLS: Boolean(this.pusherTls),
        enabledTransports: ["ws"],
      });
    }
    this._pusher?.disconnect();
    this._pusher = new Pusher(this.pusherKey, options);
    const channel = this._pusher.subscribe(`private-user-${userId}`);
    channel.bind("pusher:subscription_succeeded", () => {
      this.dataset.live = "";
      this.dispatchEvent(new CustomEvent("herald-live", { bubbles: true, composed: true }));
    });
    channel.bind("pusher:subscription_error", (error) => this._fail(error));
    channel.bind("notification", (event) => this._arrived(event));
  }

  _arrived(event) {
    if (this._items.some((item) => item.id === event.notification_id)) return;
    const item = {
      id: event.notification_id,
      type: event.type,
      category: event.category,
      urgency: event.urgency,
      render: { title: event.title, body: event.body },
      data: {},
      created_at: new Date().toISOString(),
      seen_at: null,
      read_at: null,
      archived_at: null,
      acked_at: null,
    };
    this._items = [item, ...this._items];
    this._announce(this.messages.arrived(this._title(item)));
    this._client
      ?.get("/v1/me/notifications/count")
      .then((counts) => this._setCounts(counts))
      .catch((error) => this._fail(error));
  }

  _replace(updated) {
    this._items = this._items.map((item) => (item.id === updated.id ? updated : item));
  }

  _setCounts(counts) {
    this._counts = { unread: counts.unread, unseen: counts.unseen };
    this.dispatchEvent(new CustomEvent("herald-counts", { detail: this._counts, bubbles: true, composed: true }));
  }

  _announce(text) {
    // The same text twice in a row would not be announced again: clear it first.
    this._announcement = "";
    requestAnimationFrame(() => {
      this._announcement = text;
    });
  }

  _fail(error, { shown = true } = {}) {
    if (shown) this._error = this.messages.error;
    this.dispatchEvent(new CustomEvent("herald-error", { detail: error, bubbles: true, composed: true }));
  }

  _title(item) {
    return item?.render?.title || item?.type || this.messages.untitled;
  }

  _when(iso) {
    const locale = localeOf(this);
    return new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
  }

  _toggle() {
    this.open = !this.open;
  }

  render() {
    const t = this.messages;
    const unseen = this._counts?.unseen ?? 0;
    return html`
      <button
        class="bell"
        type="button"
        aria-label=${t.bell(unseen)}
        aria-expanded=${this.open ? "true" : "false"}
        aria-controls="panel"
        @click=${this._toggle}
      >
        <svg viewBox="0 0 24 24" aria-hidden="true" focusable="false">
          <path
            fill="currentColor"
            d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1l-2-2Z"
          />
        </svg>
        ${unseen ? html`<span class="badge" part="badge" aria-hidden="true">${unseen > 99 ? "99+" : unseen}</span>` : nothing}
      </button>
      <div class="visually-hidden" aria-live="polite" aria-atomic="true">${this._announcement}</div>
      <section id="panel" class="panel" part="panel" ?hidden=${!this.open} aria-labelledby="heading">
        <header>
          <h2 id="heading">${t.heading}</h2>
          <button
            class="link"
            type="button"
            aria-disabled=${this._counts?.unread ? "false" : "true"}
            @click=${() => this._counts?.unread && this.markAllRead()}
          >
            ${t.markAllRead}
          </button>
        </header>
        <div class="scroller">
          <ul aria-label=${t.list} aria-busy=${this._loading ? "true" : "false"}>
            ${this._items.map((item) => this._renderItem(item))}
          </ul>
          ${this._renderFooter()}
        </div>
      </section>
    `;
  }

  _renderItem(item) {
    const t = this.messages;
    const title = this._title(item);
    const expanded = this._expanded.has(item.id);
    const unread = !item.read_at;
    return html`
      <li class=${unread ? "unread" : ""} data-notification-id=${item.id}>
        <button class="open" type="button" aria-expanded=${expanded ? "true" : "false"} @click=${() => this.openItem(item.id)}>
          ${unread ? html`<span class="unread-dot" role="img" aria-label=${t.unread}></span>` : nothing}
          <span class="title">${title}</span>
          ${item.render?.body
            ? html`<span class="body ${expanded ? "" : "clamped"}">${item.render.body}</span>`
            : nothing}
          <span class="meta"><time datetime=${item.created_at}>${this._when(item.created_at)}</time></span>
        </button>
        <div class="actions">
          ${unread
            ? html`<button type="button" aria-label=${t.markReadLabel(title)} @click=${() => this.markRead(item.id)}>
                ${t.markRead}
              </button>`
            : nothing}
          <button type="button" aria-label=${t.archiveLabel(title)} @click=${() => this.archive(item.id)}>
            ${t.archive}
          </button>
        </div>
      </li>
    `;
  }

  _renderFooter() {
    const t = this.messages;
    if (this._error) return html`<p class="footer error" role="alert">${this._error}</p>`;
    if (this._cursor === undefined || (this._loading && !this._items.length)) {
      return html`<p class="footer">${t.loading}</p>`;
    }
    if (this._cursor) {
      return html`<p class="footer">
        <button class="link more" type="button" ?disabled=${this._loading} @click=${() => this.loadMore()}>
          ${this._loading ? t.loading : t.loadMore}
        </button>
      </p>`;
    }
    return html`<p class="footer">${this._items.length ? t.end : t.empty}</p>`;
  }
}

customElements.define("herald-inbox", HeraldInbox);
