// Herald's operator console page: an operator signs in, and <herald-console> shows who is online, a
// person's notifications with each one's decision trace and delivery log, and the suppression list
// with lift, read from Herald's operator routes (`/v1/admin/*`) with an admin-scoped token.
//
// The page is static: it reads `config.json` beside it —
//   {"api_url": Herald's HTTP API, "token_url": where a token comes from,
//    "operator": the operator id offered, "scope": the admin scope (the stack's AdminScope)}.
// On the local stack, `make local` serves it at /console/ and token_url is the local issuer's
// `/_token?sub=<operator>&scope=openid%20<scope>` (same origin), which mints a token for anyone.
// A deployment serves these files as static assets and points token_url at its own IdP's flow
// (the response must be `{"token", "expires_in"}`), or replaces `adminTokenProvider` below with its
// IdP's SDK (e.g. an OAuth authorization-code flow with PKCE asking for the admin scope): the
// console only needs a callback that returns (a promise of) a bearer token carrying that scope.

const form = document.getElementById("sign-in");
const operatorInput = document.getElementById("operator");
const signInButton = document.getElementById("sign-in-button");
const signOutButton = document.getElementById("sign-out-button");
const statusLine = document.getElementById("status");
const herald = document.getElementById("console");

const CONFIG_URL = new URL("config.json", import.meta.url);
let config = null;

function setStatus(text, state = "") {
  statusLine.textContent = text;
  statusLine.dataset.state = state;
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

/** A token provider for `operator`: a token with the admin scope, fetched again a minute before
 *  it expires. */
function adminTokenProvider(operator) {
  let token = null;
  let expires = 0;
  return async () => {
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
  setStatus(`Signed in as operator ${operator} (scope ${config.scope}).`, "live");
}

herald.addEventListener("herald-error", (event) => {
  const error = event.detail ?? {};
  setStatus(`Herald: ${error.message ?? "error"}${error.status ? ` (${error.status})` : ""}.`, "error");
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
