// Herald's demo app page: a person signs in (the local issuer's token), pusher-js connects to the
// Pusher sandbox, authorizes the person's private-user-<id> channel through Herald's
// POST /v1/pusher/auth with that token, and lists every "notification" event the channel gets.

const form = document.getElementById("sign-in");
const userSelect = document.getElementById("user");
const signInButton = document.getElementById("sign-in-button");
const signOutButton = document.getElementById("sign-out-button");
const statusLine = document.getElementById("status");
const list = document.getElementById("notifications");
const empty = document.getElementById("empty");

let config = null;
let pusher = null;

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

function show(notification) {
  const item = document.createElement("li");
  item.dataset.notificationId = notification.notification_id ?? "";
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = notification.title || notification.type || "Notification";
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = notification.body ?? "";
  const meta = document.createElement("span");
  meta.className = "meta";
  const received = new Date().toLocaleTimeString();
  meta.textContent = ` (${notification.type ?? "?"}, ${notification.urgency ?? "?"} urgency, received ${received})`;
  item.append(title, body, meta);
  list.prepend(item);
  empty.hidden = true;
}

function signOut() {
  if (pusher) {
    pusher.disconnect();
    pusher = null;
  }
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
  const channelName = `private-user-${user}`;
  pusher = new window.Pusher(config.pusher.key, {
    cluster: config.pusher.cluster,
    wsHost: config.pusher.ws_host,
    wsPort: config.pusher.ws_port,
    forceTLS: false,
    enabledTransports: ["ws"],
    channelAuthorization: {
      endpoint: config.pusher.auth_endpoint,
      transport: "ajax",
      headersProvider: () => ({ Authorization: `Bearer ${issued.token}` }),
    },
  });
  pusher.connection.bind("state_change", ({ current }) => {
    if (current !== "connected") {
      setStatus(`Realtime connection: ${current}.`, current === "unavailable" ? "error" : "");
    }
  });
  const channel = pusher.subscribe(channelName);
  channel.bind("pusher:subscription_succeeded", () => {
    setStatus(`Signed in as ${user}: live on ${channelName}.`, "live");
  });
  channel.bind("pusher:subscription_error", (error) => {
    setStatus(`Herald refused ${channelName} (${error.status ?? error.type}).`, "error");
  });
  channel.bind("notification", show);
}

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
  } else if (!window.Pusher) {
    setStatus("pusher-js did not load: run `make local` (npm ci in web/).", "error");
    signInButton.disabled = true;
  }
} catch (error) {
  setStatus(`Cannot load the demo configuration: ${error.message}`, "error");
  signInButton.disabled = true;
}
