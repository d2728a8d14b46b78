// What Herald's components share: calls to Herald's app API (`/v1/me/...`) with the bearer token the
// host app's token provider gives, the person's id, and the choice of a message table by locale.

/** The locales Herald's templates are written in; a component's message tables have the same. */
export const LOCALES = ["en", "es", "pt", "pt-BR"];

/**
 * The best of `LOCALES` for a BCP 47 tag, as the templates choose: the exact tag, else its
 * language (`pt-PT` → `pt`), else English.
 */
export function resolveLocale(tag) {
  if (!tag) return "en";
  const wanted = String(tag).replace("_", "-");
  const exact = LOCALES.find((locale) => locale.toLowerCase() === wanted.toLowerCase());
  if (exact) return exact;
  const language = wanted.split("-")[0].toLowerCase();
  return LOCALES.find((locale) => locale === language) ?? "en";
}

/** The locale an element speaks: its `locale` property, else the nearest `lang`, else the browser's. */
export function localeOf(element) {
  if (element.locale) return resolveLocale(element.locale);
  const withLang = element.closest("[lang]");
  return resolveLocale(withLang?.getAttribute("lang") || navigator.language);
}

/** An error answered by Herald's API (`status`, and the body's `message` when it has one). */
export class HeraldApiError extends Error {
  /** `code`: Herald's error code (`error.code` of its one error shape), when it answered one. */
  constructor(status, message, code = null) {
    super(message);
    this.name = "HeraldApiError";
    this.status = status;
    this.code = code;
  }
}

/** How long a request may take before it is given up (ms): a hung request must not freeze a feed. */
export const REQUEST_TIMEOUT_MS = 20_000;

/**
 * Herald's app API for one person. `tokenProvider` is the host app's callback: a function returning
 * (a promise of) the bearer token; it is called before every request, so the app refreshes it. It
 * may be called with `{refresh: true}` after Herald refused its token (401): a provider that caches
 * tokens then gets a new one. `options.timeout` (ms) bounds every request (REQUEST_TIMEOUT_MS).
 */
export class HeraldClient {
  constructor(apiUrl, tokenProvider, { timeout = REQUEST_TIMEOUT_MS } = {}) {
    this.apiUrl = String(apiUrl).replace(/\/+$/, "");
    this.tokenProvider = tokenProvider;
    this.timeout = timeout;
  }

  /** The bearer token; `options` (`{refresh: true}`) is passed on to the token provider. */
  async token(options = undefined) {
    const token = await (options === undefined ? this.tokenProvider() : this.tokenProvider(options));
    if (!token) throw new HeraldApiError(401, "the token provider gave no token");
    return token;
  }

  /** `fetch` and its answer's text, given up after `this.timeout` ms (then a HeraldApiError with
   *  status 0 and code `timeout`). */
  async _fetch(url, init, what) {
    try {
      const response = await fetch(url, { ...init, signal: AbortSignal.timeout(this.timeout) });
      return { response, text: await response.text() };
    } catch (error) {
      if (error?.name === "TimeoutError") {
        throw new HeraldApiError(0, `${what}: no answer within ${this.timeout / 1000} s`, "timeout");
      }
      throw error;
    }
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${await this.token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const what = `${method} ${path}`;
    const { response, text } = await this._fetch(
      `${this.apiUrl}${path}`,
      { method, headers, body: body === undefined ? undefined : JSON.stringify(body) },
      what,
    );
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // not JSON (a proxy's HTML error page, say): the HTTP status is what is known
      const message = response.ok ? `${what}: the answer is not JSON` : `${what}: HTTP ${response.status}`;
      throw new HeraldApiError(response.status, message);
    }
    if (!response.ok) {
      const message = data?.error?.message ?? `${what}: HTTP ${response.status}`;
      throw new HeraldApiError(response.status, message, data?.error?.code ?? null);
    }
    return data;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body) {
    return this.request("POST", path, body);
  }

  put(path, body) {
    return this.request("PUT", path, body);
  }

  /** `POST /v1/pusher/auth`, form-encoded as pusher-js sends it; for pusher-js's `customHandler`. */
  async authorizeChannel({ socketId, channelName }) {
    const { response, text } = await this._fetch(
      `${this.apiUrl}/v1/pusher/auth`,
      {
        method: "POST",
        headers: {
          Authorization: `Bearer ${await this.token()}`,
          "Content-Type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({ socket_id: socketId, channel_name: channelName }),
      },
      "channel authorization",
    );
    if (!response.ok) throw new HeraldApiError(response.status, `channel authorization: HTTP ${response.status}`);
    return JSON.parse(text);
  }

  /** The person's id: the token's `sub` claim (read, not verified: Herald verifies it). */
  async subject() {
    const token = await this.token();
    const payload = token.split(".")[1] ?? "";
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "="));
    return JSON.parse(json).sub;
  }
}
