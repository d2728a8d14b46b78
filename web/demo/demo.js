// Herald's demo app page: a person signs in (the local issuer's token), and Herald's <herald-inbox>
// shows their notifications: the exact unseen count on the bell, the list from Herald's app API,
// and new ones live through pusher-js on their private-user-<id> channel, which the component has
// Herald authorize (POST /v1/pusher/auth) with the token this page's token provider gives.

const form = document.getElementById("sign-in");
const userSelect = document.getElementById("user");
const signInButton = document.getElementById("sign-in-button");
const signOutButton = document.getElementById("sign-out-button");
const statusLine = document.getElementById("status");
const inbox = document.getElementById("inbox");
const preferences = document.getElementById("preferences");

let config = null;
let signedIn = null; // the demo user signed in, if any

function setStatus(text, state = "") {
  statusLine.textContent = text;
  statusLine.dataset.state = state;
}

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  if (!response.ok) {
    throw new Error(`${url}: HTTP ${response.status}`);
  }
  return response.json();
}

function signOut() {
  signedIn = null;
  inbox.tokenProvider = null; // the component disconnects from Pusher and forgets the person
  inbox.hidden = true;
  inbox.open = false;
  preferences.tokenProvider = null;
  preferences.hidden = true;
  signInButton.hidden = false;
  signOutButton.hidden = true;
  userSelect.disabled = false;
  setStatus("Signed out.");
}

async function signIn(user) {
  signOut();
  userSelect.disabled = true;
  signInButton.hidden = true;
  signOutButton.hidden = false;
  setStatus(`Signing in as ${user}…`);
  const issued = await fetchJson(`${config.token_url}?sub=${encodeURIComponent(user)}`);
  // The app's side of the contract: where Herald and Pusher are, who the person is, and a callback
  // giving (a promise of) their bearer token. A real app would refresh it there when it expires.
  Object.assign(inbox, {
    apiUrl: config.api_url,
    pusherKey: config.pusher.key,
    pusherCluster: config.pusher.cluster,
    pusherHost: config.pusher.ws_host,
    pusherPort: config.pusher.ws_port,
    userId: user,
    tokenProvider: async () => issued.token,
  });
  Object.assign(preferences, { apiUrl: config.api_url, tokenProvider: async () => issued.token });
  signedIn = user;
  inbox.hidden = false;
  preferences.hidden = false;
}

inbox.addEventListener("herald-live", () => {
  if (signedIn) setStatus(`Signed in as ${signedIn}: live on private-user-${signedIn}.`, "live");
});

const showError = (event) => {
  const error = event.detail ?? {};
  setStatus(`Herald: ${error.message ?? error.type ?? "error"}${error.status ? ` (${error.status})` : ""}.`, "error");
};
inbox.addEventListener("herald-error", showError);
preferences.addEventListener("herald-error", showError);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  signIn(userSelect.value).catch((error) => setStatus(`Sign-in failed: ${error.message}`, "error"));
});
signOutButton.addEventListener("click", signOut);

try {
  config = await fetchJson("/demo/config.json");
  for (const user of config.users) {
    userSelect.append(new Option(user, user));
  }
  if (!config.pusher.auth_endpoint) {
    setStatus("This sandbox does not know Herald's HTTP API: start it with `make local`.", "error");
    signInButton.disabled = true;
  } else if (!window.Pusher || !customElements.get("herald-inbox") || !customElements.get("herald-preferences")) {
    setStatus("pusher-js or Lit did not load: run `make local` (npm ci in web/).", "error");
    signInButton.disabled = true;
  }
} catch (error) {
  setStatus(`Cannot load the demo configuration: ${error.message}`, "error");
  signInButton.disabled = true;
}
