// <herald-preferences>: Herald's preference centre as a standard Web Component (Lit, no build step).
// Configured like <herald-inbox> (`api-url`, `tokenProvider`, `locale`), plus the SMS marketing
// consent wording the app shows, and its version (`sms-consent-version`, `sms-consent-wording`):
// Herald records the version the person agreed to (TCPA proof); the text is the app's.
//
// It edits what GET/PUT /v1/me/preferences holds, as the router uses it: the channel opt-ins
// (columns), the categories received (rows; security and system always are), the matrix's cells
// (a channel turned off for one category: `muted_channels`; security and system rows are shown,
// never editable); quiet hours in an IANA time zone; the marketing opt-in.
// The SMS marketing consent in force is GET /v1/me/contacts, and is changed by PUT there.
// Events: `herald-saved` (detail: the preferences document Herald answered), `herald-error`.

import { LitElement, css, html, nothing } from "lit";
import { HeraldClient, localeOf } from "./herald-client.js";

const CHANNELS = ["email", "push", "sms", "realtime"];
const CATEGORIES = ["transactional", "marketing", "security", "system"];
const MANDATORY = new Set(["security", "system"]);

const MESSAGES = {
  en: {
    heading: "Notification settings",
    channelsLegend: "Channels",
    channels: { email: "Email", push: "Push", sms: "Text messages (SMS)", realtime: "In-app" },
    matrixCaption: "What reaches you, and where",
    category: "Category",
    categories: {
      transactional: "Account activity",
      marketing: "News and offers",
      security: "Security",
      system: "Service messages",
    },
    receive: (name) => `Receive ${name}`,
    cell: (channel, category) => `${channel} for ${category}`,
    required: "Always sent",
    on: "On",
    off: "Off",
    quietLegend: "Quiet hours",
    quietEnabled: "Hold push and text messages during quiet hours",
    from: "From",
    to: "To",
    timeZone: "Time zone",
    marketingLegend: "Marketing",
    marketingOptIn: "Send me news and offers",
    smsLegend: "Marketing text messages",
    smsAgree: "I agree to receive marketing text messages",
    smsWordingVersion: (version) => `Consent wording version ${version}`,
    smsRecorded: (version, when) => `Recorded: you agreed to version ${version} on ${when}.`,
    smsNotRecorded: "No consent recorded.",
    smsNoPhone: "Add a phone number to your account to receive text messages.",
    save: "Save settings",
    saving: "Saving…",
    saved: "Settings saved.",
    loading: "Loading…",
    error: "Your settings could not be loaded or saved. Try again.",
  },
  es: {
    heading: "Ajustes de notificaciones",
    channelsLegend: "Canales",
    channels: { email: "Correo electrónico", push: "Push", sms: "Mensajes de texto (SMS)", realtime: "En la app" },
    matrixCaption: "Qué te llega y por dónde",
    category: "Categoría",
    categories: {
      transactional: "Actividad de la cuenta",
      marketing: "Novedades y ofertas",
      security: "Seguridad",
      system: "Mensajes del servicio",
    },
    receive: (name) => `Recibir ${name}`,
    cell: (channel, category) => `${channel} para ${category}`,
    required: "Siempre se envían",
    on: "Sí",
    off: "No",
    quietLegend: "Horas de silencio",
    quietEnabled: "Retener push y SMS durante las horas de silencio",
    from: "Desde",
    to: "Hasta",
    timeZone: "Zona horaria",
    marketingLegend: "Marketing",
    marketingOptIn: "Enviarme novedades y ofertas",
    smsLegend: "Mensajes de texto de marketing",
    smsAgree: "Acepto recibir mensajes de texto de marketing",
    smsWordingVersion: (version) => `Versión del texto de consentimiento ${version}`,
    smsRecorded: (version, when) => `Registrado: aceptaste la versión ${version} el ${when}.`,
    smsNotRecorded: "No hay consentimiento registrado.",
    smsNoPhone: "Añade un número de teléfono a tu cuenta para recibir mensajes de texto.",
    save: "Guardar ajustes",
    saving: "Guardando…",
    saved: "Ajustes guardados.",
    loading: "Cargando…",
    error: "No se pudieron cargar o guardar tus ajustes. Inténtalo de nuevo.",
  },
  pt: {
    heading: "Definições de notificações",
    channelsLegend: "Canais",
    channels: { email: "Email", push: "Push", sms: "Mensagens de texto (SMS)", realtime: "Na aplicação" },
    matrixCaption: "O que lhe chega, e por onde",
    category: "Categoria",
    categories: {
      transactional: "Atividade da conta",
      marketing: "Novidades e ofertas",
      security: "Segurança",
      system: "Mensagens do serviço",
    },
    receive: (name) => `Receber ${name}`,
    cell: (channel, category) => `${channel} para ${category}`,
    required: "Sempre enviadas",
    on: "Sim",
    off: "Não",
    quietLegend: "Horas de silêncio",
    quietEnabled: "Reter push e SMS durante as horas de silêncio",
    from: "Das",
    to: "Às",
    timeZone: "Fuso horário",
    marketingLegend: "Marketing",
    marketingOptIn: "Enviar-me novidades e ofertas",
    smsLegend: "Mensagens de texto de marketing",
    smsAgree: "Aceito receber mensagens de texto de marketing",
    smsWordingVersion: (version) => `Versão do texto de consentimento ${version}`,
    smsRecorded: (version, when) => `Registado: aceitou a versão ${version} em ${when}.`,
    smsNotRecorded: "Nenhum consentimento registado.",
    smsNoPhone: "Adicione um número de telefone à sua conta para receber mensagens de texto.",
    save: "Guardar definições",
    saving: "A guardar…",
    saved: "Definições guardadas.",
    loading: "A carregar…",
    error: "Não foi possível carregar ou guardar as suas definições. Tente novamente.",
  },
  "pt-BR": {
    heading: "Configurações de notificações",
    channelsLegend: "Canais",
    channels: { email: "E-mail", push: "Push", sms: "Mensagens de texto (SMS)", realtime: "No app" },
    matrixCaption: "O que chega para você, e por onde",
    category: "Categoria",
    categories: {
      transactional: "Atividade da conta",
      marketing: "Novidades e ofertas",
      security: "Segurança",
      system: "Mensagens do serviço",
    },
    receive: (name) => `Receber ${name}`,
    cell: (channel, category) => `${channel} para ${category}`,
    required: "Sempre enviadas",
    on: "Sim",
    off: "Não",
    quietLegend: "Horário de silêncio",
    quietEnabled: "Segurar push e SMS durante o horário de silêncio",
    from: "Das",
    to: "Às",
    timeZone: "Fuso horário",
    marketingLegend: "Marketing",
    marketingOptIn: "Quero receber novidades e ofertas",
    smsLegend: "Mensagens de texto de marketing",
    smsAgree: "Aceito receber mensagens de texto de marketing",
    smsWordingVersion: (version) => `Versão do texto de consentimento ${version}`,
    smsRecorded: (version, when) => `Registrado: você aceitou a versão ${version} em ${when}.`,
    smsNotRecorded: "Nenhum consentimento registrado.",
    smsNoPhone: "Adicione um número de telefone à sua conta para receber mensagens de texto.",
    save: "Salvar configurações",
    saving: "Salvando…",
    saved: "Configurações salvas.",
    loading: "Carregando…",
    error: "Não foi possível carregar ou salvar suas configurações. Tente novamente.",
  },
};

/** `HH:MM` of the API's `HH:MM:SS`. */
const wallTime = (value) => (value ? value.slice(0, 5) : "");

export class HeraldPreferences extends LitElement {
  static properties = {
    apiUrl: { type: String, attribute: "api-url" },
    locale: { type: String },
    smsConsentVersion: { type: String, attribute: "sms-consent-version" },
    smsConsentWording: { type: String, attribute: "sms-consent-wording" },
    tokenProvider: { attribute: false },
    _document: { state: true },
    _contacts: { state: true },
    _status: { state: true },
    _busy: { state: true },
  };

  static styles = css`
    :host { display: block; color: #1f2328; }
    :host([hidden]) { display: none; }
    h2 { font-size: 1.15rem; }
    fieldset { border: 1px solid #d0d7de; border-radius: 6px; margin: 0 0 1rem; padding: 0.6rem 0.9rem; }
    legend { font-weight: 600; padding: 0 0.3rem; }
    label { display: inline-flex; align-items: center; gap: 0.4rem; margin: 0.2rem 1rem 0.2rem 0; }
    input, select, button { font: inherit; }
    input:focus-visible, select:focus-visible, button:focus-visible { outline: 3px solid #0a58ca; outline-offset: 2px; }
    table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
    caption { text-align: left; font-weight: 600; margin-bottom: 0.4rem; }
    th, td { border: 1px solid #d0d7de; padding: 0.35rem 0.5rem; text-align: left; }
    td.on { color: #116329; }
    td.off { color: #57606a; }
    .note { color: #57606a; font-size: 0.9rem; margin: 0.2rem 0; }
    .wording { margin: 0.3rem 0; padding: 0.5rem 0.7rem; background: #f6f8fa; border-left: 4px solid #8c959f; }
    .status { min-height: 1.5rem; }
    .status.error { color: #b42318; }
    button[type="submit"] { padding: 0.35rem 0.9rem; }
  `;

  constructor() {
    super();
    this.tokenProvider = null;
    this._document = null;
    this._contacts = null;
    this._status = "";
    this._busy = false;
    this._client = null;
  }

  get messages() {
    return MESSAGES[localeOf(this)];
  }

  /** The preferences document last read from (or answered by) Herald. */
  get document() {
    return this._document;
  }

  willUpdate(changed) {
    if (changed.has("apiUrl") || changed.has("tokenProvider")) {
      this._client = this.apiUrl && this.tokenProvider ? new HeraldClient(this.apiUrl, this.tokenProvider) : null;
      this._document = null;
      this._contacts = null;
      this._status = "";
      if (this._client) this.load();
    }
  }

  /** Reads the preferences in effect and the SMS consent in force. */
  async load() {
    const client = this._client;
    if (!client) return;
    try {
      const [document, contacts] = await Promise.all([client.get("/v1/me/preferences"), client.get("/v1/me/contacts")]);
      if (client !== this._client) return;
      this._document = document;
      this._contacts = this._consentInForce(contacts);
    } catch (error) {
      this._fail(error);
    }
  }

  /** The component's view of GET/PUT /v1/me/contacts' answer (Herald decides what is in force). */
  _consentInForce(contacts) {
    const state = contacts.sms_marketing;
    return { phone: contacts.phone, granted: state.granted, wordingVersion: state.wording_version, at: state.given_at };
  }

  async _save(event) {
    event.preventDefault();
    const form = event.target;
    const t = this.messages;
    const value = (name) => form.elements.namedItem(name);
    const quiet = value("quiet").checked;
    const update = {
      channels: Object.fromEntries(CHANNELS.map((channel) => [channel, value(`channel-${channel}`).checked])),
      muted_categories: CATEGORIES.filter(
        (category) => !MANDATORY.has(category) && !value(`receive-${category}`).checked,
      ),
      muted_types: this._document.muted_types,
      muted_channels: Object.fromEntries(
        CATEGORIES.filter((category) => !MANDATORY.has(category)).map((category) => [
          category,
          CHANNELS.filter((channel) => !value(`cell-${category}-${channel}`).checked),
        ]),
      ),
      marketing_opt_in: value("marketing").checked,
      quiet_hours: quiet ? { start: value("quiet-start").value, end: value("quiet-end").value } : null,
      time_zone: value("time-zone").value,
      locale: this._document.locale,
    };
    this._busy = true;
    this._status = t.saving;
    try {
      this._document = await this._client.put("/v1/me/preferences", update);
      const agree = value("sms-agree");
      if (agree && !agree.disabled && agree.checked !== this._contacts.granted) {
        const answered = await this._client.put("/v1/me/contacts", {
          sms_marketing: { granted: agree.checked, wording_version: this.smsConsentVersion || null },
        });
        this._contacts = this._consentInForce(answered);
      }
      this._status = t.saved;
      this.dispatchEvent(new CustomEvent("herald-saved", { detail: this._document, bubbles: true, composed: true }));
    } catch (error) {
      this._fail(error);
    } finally {
      this._busy = false;
    }
  }

  _fail(error) {
    this._status = this.messages.error;
    this.dispatchEvent(new CustomEvent("herald-error", { detail: error, bubbles: true, composed: true }));
  }

  _timeZones(current) {
    const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    return zones.includes(current) ? zones : [current, ...zones];
  }

  _rerender() {
    this.requestUpdate(); // the matrix follows the checkboxes before they are saved
  }

  render() {
    const t = this.messages;
    const doc = this._document;
    const error = this._status === t.error;
    if (!doc) {
      return html`<h2>${t.heading}</h2>
        <p class="status ${error ? "error" : ""}" role="status">${error ? t.error : t.loading}</p>`;
    }
    const form = this.renderRoot.querySelector("form");
    const checked = (name, fallback) => {
      const input = form?.elements.namedItem(name);
      return input ? input.checked : fallback;
    };
    // Promotional (marketing) notifications also need the marketing opt-in, as the router has it.
    const received = (category) =>
      MANDATORY.has(category) ||
      (checked(`receive-${category}`, !doc.muted_categories.includes(category)) &&
        (category !== "marketing" || checked("marketing", doc.marketing_opt_in)));
    const channelOn = (channel) => checked(`channel-${channel}`, doc.channels[channel]);
    const quiet = checked("quiet", doc.quiet_hours !== null);
    const consent = this._contacts ?? { phone: null, granted: false };
    return html`
      <h2 id="heading">${t.heading}</h2>
      <form aria-labelledby="heading" @submit=${this._save} @change=${this._rerender}>
        <fieldset>
          <legend>${t.channelsLegend}</legend>
          ${CHANNELS.map(
            (channel) => html`<label>
              <input type="checkbox" name="channel-${channel}" .checked=${doc.channels[channel]} />
              ${t.channels[channel]}
            </label>`,
          )}
        </fieldset>
        <table>
          <caption>${t.matrixCaption}</caption>
          <thead>
            <tr>
              <th scope="col">${t.category}</th>
              ${CHANNELS.map((channel) => html`<th scope="col">${t.channels[channel]}</th>`)}
            </tr>
          </thead>
          <tbody>
            ${CATEGORIES.map((category) => {
              const name = t.categories[category];
              return html`<tr>
                <th scope="row">
                  ${MANDATORY.has(category)
                    ? html`<label>
                        <input type="checkbox" checked disabled aria-describedby="required-${category}" />
                        ${name}
                      </label>
                      <span class="note" id="required-${category}">${t.required}</span>`
                    : html`<label>
                        <input
                          type="checkbox"
                          name="receive-${category}"
                          aria-label=${t.receive(name)}
                          .checked=${!doc.muted_categories.includes(category)}
                        />
                        ${name}
                      </label>`}
                </th>
                ${CHANNELS.map((channel) => {
                  if (MANDATORY.has(category)) {
                    const on = channelOn(channel); // only the channel's own switch applies
                    return html`<td class=${on ? "on" : "off"}>${on ? t.on : t.off}</td>`;
                  }
                  const cell = `cell-${category}-${channel}`;
                  const wanted = checked(cell, !(doc.muted_channels[category] ?? []).includes(channel));
                  const on = received(category) && channelOn(channel) && wanted;
                  // editable while the row and the column are on; its choice is kept either way
                  return html`<td class=${on ? "on" : "off"}>
                    <label>
                      <input
                        type="checkbox"
                        name=${cell}
                        aria-label=${t.cell(t.channels[channel], name)}
                        ?disabled=${!(received(category) && channelOn(channel))}
                        .checked=${!(doc.muted_channels[category] ?? []).includes(channel)}
                      />
                      <span aria-hidden="true">${on ? t.on : t.off}</span>
                    </label>
                  </td>`;
                })}
              </tr>`;
            })}
          </tbody>
        </table>
        <fieldset>
          <legend>${t.quietLegend}</legend>
          <label><input type="checkbox" name="quiet" .checked=${doc.quiet_hours !== null} /> ${t.quietEnabled}</label>
          <div>
            <label>${t.from} <input type="time" name="quiet-start" required ?disabled=${!quiet}
              .value=${wallTime(doc.quiet_hours?.start) || "22:00"} /></label>
            <label>${t.to} <input type="time" name="quiet-end" required ?disabled=${!quiet}
              .value=${wallTime(doc.quiet_hours?.end) || "07:00"} /></label>
          </div>
          <label>${t.timeZone}
            <select name="time-zone">
              ${this._timeZones(doc.time_zone).map(
                (zone) => html`<option value=${zone} ?selected=${zone === doc.time_zone}>${zone}</option>`,
              )}
            </select>
          </label>
        </fieldset>
        <fieldset>
          <legend>${t.marketingLegend}</legend>
          <label><input type="checkbox" name="marketing" .checked=${doc.marketing_opt_in} /> ${t.marketingOptIn}</label>
        </fieldset>
        ${this.smsConsentWording ? this._renderSmsConsent(consent) : nothing}
        <button type="submit" ?disabled=${this._busy}>${this._busy ? t.saving : t.save}</button>
        <p class="status ${error ? "error" : ""}" role="status">${this._status}</p>
      </form>
    `;
  }

  _renderSmsConsent(consent) {
    const t = this.messages;
    const when = consent.at
      ? new Intl.DateTimeFormat(localeOf(this), { dateStyle: "medium", timeStyle: "short" }).format(new Date(consent.at))
      : "";
    return html`<fieldset>
      <legend>${t.smsLegend}</legend>
      <p class="wording" id="sms-wording">${this.smsConsentWording}</p>
      <p class="note" id="sms-version">${t.smsWordingVersion(this.smsConsentVersion)}</p>
      <label>
        <input
          type="checkbox"
          name="sms-agree"
          aria-describedby="sms-wording sms-version sms-recorded"
          ?disabled=${!consent.phone}
          .checked=${consent.granted}
        />
        ${t.smsAgree}
      </label>
      <p class="note" id="sms-recorded">
        ${!consent.phone ? t.smsNoPhone : consent.granted ? t.smsRecorded(consent.wordingVersion, when) : t.smsNotRecorded}
      </p>
    </fieldset>`;
  }
}

customElements.define("herald-preferences", HeraldPreferences);
