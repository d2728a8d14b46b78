// Herald's operator console page: an operator signs in, and <herald-console> shows who is online, a
// person's notifications with each one's decision trace and delivery log, and the suppression list
// with lift, read from Herald's operator routes (`/v1/admin/*`) with an admin-scoped token.
//
// The page is static: it reads `config.json` beside it —
//   {"api_url": Herald's HTTP API, "token_url": the local issuer,
//    "operator": the operator id offered, "scope": the admin scope (the stack's AdminScope)}.
// On the local stack, `make local` serves it at /console/ and token_url is the local issuer's
// `/_token?sub=<operator>&scope=openid%20<scope>` (same origin), which mints a token for ANY `sub`
// it is asked for: the local stack only. Never deploy an endpoint like it. A deployment replaces
// `adminTokenProvider` below with its identity provider's sign-in (e.g. an OAuth authorization-code
// flow with PKCE, through the IdP's SDK), which signs the operator in and issues a token carrying
// the admin scope to operators only: the console only needs a callback returning (a promise of)
// that token, and dropping a cached one when it is called with `{refresh: true}` (Herald refused it).

const form = document.getElementById("sign-in");
const operatorInput = document.getElementById("operator");
const signInButton = document.getElementById("sign-in-button");
const signOutButton = document.getElementById("sign-out-button");
const statusLine = document.getElementById("status");
const herald = document.getElementById("console");

const CONFIG_URL = new URL("config.json", import.meta.url);
let config = null;
let signedIn = ""; // the status line while the console reads

function setStatus(text, state = "") {
  statusLine.textContent = text;
  statusLine.dataset.state = state;
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

/** A token provider for `operator` (local issuer): a token with the admin scope, fetched again a
 *  minute before it expires, or at once when the console says Herald refused it (`refresh`). */
function adminTokenProvider(operator) {
  let token = null;
  let expires = 0;
  return async ({ refresh = false } = {}) => {
    if (refresh) token = null;
    if (!token || Date.now() > expires - 60_000) {
      const url = new URL(config.token_url, CONFIG_URL);
      url.searchParams.set("sub", operator);
      url.searchParams.set("scope", `openid ${config.scope}`);
      const issued = await fetchJson(url);
      token = issued.token;
      expires = Date.now() + Number(issued.expires_in ?? 300) * 1000;
    }
    return token;
  };
}

function signOut() {
  signedIn = "";
  herald.tokenProvider = null; // the console stops reading and forgets what it showed
  herald.hidden = true;
  signInButton.hidden = false;
  signOutButton.hidden = true;
  operatorInput.disabled = false;
  setStatus("Signed out.");
}

async function signIn(operator) {
  signOut();
  operatorInput.disabled = true;
  signInButton.hidden = true;
  signOutButton.hidden = false;
  setStatus(`Signing in as ${operator}…`);
  const tokenProvider = adminTokenProvider(operator);
  await tokenProvider(); // fails here, not in every section, when no token can be had
  Object.assign(herald, { apiUrl: config.api_url, tokenProvider });
  herald.hidden = false;
  signedIn = `Signed in as operator ${operator} (scope ${config.scope}).`;
  setStatus(signedIn, "live");
}

// The console says a failure once (not at every failing poll), and when its reads succeed again.
herald.addEventListener("herald-error", (event) => {
  const error = event.detail ?? {};
  setStatus(`Herald: ${error.message ?? "error"}${error.status ? ` (${error.status})` : ""}.`, "error");
});
herald.addEventListener("herald-recovered", () => {
  if (herald.tokenProvider && signedIn) setStatus(signedIn, "live");
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(operatorInput.value.trim()).catch((error) => {
    signOut();
    setStatus(`Sign-in failed: ${error.message}`, "error");
  });
});
signOutButton.addEventListener("click", signOut);

try {
  config = await fetchJson(CONFIG_URL);
  operatorInput.value = config.operator ?? "";
  if (!config.api_url || !config.scope) {
    setStatus("This page does not know Herald's HTTP API or its admin scope: start it with `make local`.", "error");
    signInButton.disabled = true;
  } else if (!customElements.get("herald-console")) {
    setStatus("Lit did not load: run `make local` (npm ci in web/).", "error");
    signInButton.disabled = true;
  }
} catch (error) {
  setStatus(`Cannot load the console configuration: ${error.message}`, "error");
  signInButton.disabled = true;
}
