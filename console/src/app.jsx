// The console's shell: navigation, the API key, the live-events connection and the alerts badge.
import { useEffect, useMemo, useState } from "preact/hooks";
import { fleetEvents, get, getKey, setKey } from "./api.js";
import { Alerts } from "./pages/alerts.jsx";
import { Chat } from "./pages/chat.jsx";
import { Embeddings } from "./pages/embeddings.jsx";
import { Fleet } from "./pages/fleet.jsx";
import { Media } from "./pages/media.jsx";
import { Models } from "./pages/models.jsx";
import { Requests } from "./pages/requests.jsx";

const PAGES = [
  { path: "fleet", title: "Fleet", component: Fleet },
  { path: "models", title: "Models", component: Models },
  { path: "chat", title: "Chat", component: Chat },
  { path: "media", title: "Images & speech", component: Media },
  { path: "embeddings", title: "Embeddings", component: Embeddings },
  { path: "requests", title: "Requests", component: Requests },
  { path: "alerts", title: "Alerts", component: Alerts },
];

const currentPath = () => location.hash.replace(/^#\/?/, "").split(/[?&]/)[0] || "fleet";

function useRoute() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const onHash = () => setPath(currentPath());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  return path;
}

/** Active alerts, refetched whenever an alert event arrives (no polling). */
function useActiveAlerts(events, key) {
  const [count, setCount] = useState(null);
  useEffect(() => {
    const load = () =>
      get("/v1/alerts?limit=1")
        .then((a) => setCount(a.active.length))
        .catch(() => setCount(null));
    load();
    return events.subscribe("alert", load);
  }, [events, key]);
  return count;
}

function KeyBox({ onChange }) {
  const [value, setValue] = useState(getKey());
  const save = (e) => {
    e.preventDefault();
    setKey(value.trim());
    onChange(value.trim());
  };
  return (
    <form class="keybox" onSubmit={save}>
      <label>
        API key{" "}
        <input id="api-key" type="password" autocomplete="off" value={value} onInput={(e) => setValue(e.target.value)} />
      </label>
      <button type="submit">Use</button>
    </form>
  );
}

export function App() {
  const path = useRoute();
  const [key, setKeyState] = useState(getKey());
  const events = useMemo(() => fleetEvents(), []);
  const [link, setLink] = useState("connecting");
  useEffect(() => {
    const off = events.onStatus(setLink);
    events.start();
    return () => {
      off();
      events.stop();
    };
  }, [events]);
  const alerts = useActiveAlerts(events, key);
  const page = PAGES.find((p) => p.path === path) || PAGES[0];
  const Page = page.component;
  useEffect(() => {
    document.title = `${page.title} · ModalMesh`;
  }, [page]);
  const changeKey = (k) => {
    setKeyState(k);
    events.restart();
  };

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById("main").focus())}>
        Skip to content
      </a>
      <header>
        <span class="brand">ModalMesh</span>
        <nav aria-label="Pages">
          {PAGES.map((p) => (
            <a href={`#/${p.path}`} aria-current={p === page ? "page" : undefined} key={p.path}>
              {p.title}
              {p.path === "alerts" && (
                <span
                  id="alerts-badge"
                  class={`badge ${alerts ? "firing" : ""}`}
                  title={alerts === null ? "alerts unknown" : `${alerts} active alerts`}
                >
                  {alerts ?? "?"}
                </span>
              )}
            </a>
          ))}
        </nav>
        <span id="link" class={`link ${link === "live" ? "live" : ""}`} title="the live events stream">
          {link}
        </span>
        <KeyBox onChange={changeKey} />
      </header>
      <main id="main" tabIndex={-1}>
        {key ? <Page key={`${page.path}-${key}`} events={events} /> : <p>Enter an API key above to use the console.</p>}
      </main>
    </>
  );
}
