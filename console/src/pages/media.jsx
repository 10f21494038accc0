// Images, speech and video: each made as an async task (POST /v1/tasks) whose progress streams as
// server-sent events, then shown from its signed URL in a gallery, newest first.
import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, stream } from "../api.js";
import { ModelSelect } from "../components/model-select.jsx";
import { asCurl } from "../snippets.js";

const KINDS = {
  image: (text) => ({ prompt: text, size: "256x256", steps: 12 }),
  speech: (text) => ({ input: text, response_format: "wav" }),
  video: (text) => ({ prompt: text, size: "64x64", frames: 9, steps: 8 }),
};

function Made({ item }) {
  const kind = item.artifact.content_type.split("/")[0];
  return (
    <figure class="card made">
      {kind === "image" ? (
        <img src={item.url} alt={item.caption} />
      ) : kind === "audio" ? (
        <audio src={item.url} controls />
      ) : (
        <video src={item.url} controls />
      )}
      <figcaption>
        {item.caption} · {item.artifact.content_type} · {item.artifact.size} bytes ·{" "}
        <a href={item.url} download>
          download
        </a>
      </figcaption>
    </figure>
  );
}

export function Media() {
  const [catalog, setCatalog] = useState([]);
  const [kind, setKind] = useState("image");
  const [model, setModel] = useState("");
  const [prompt, setPrompt] = useState("");
  const [progress, setProgress] = useState(null);
  const [status, setStatus] = useState("");
  const [failed, setFailed] = useState(false);
  const [made, setMade] = useState([]);
  const [lastBody, setLastBody] = useState(null);
  const abort = useRef(null);

  useEffect(() => {
    get("/v1/models")
      .then((m) => setCatalog(m.data))
      .catch((err) => (setStatus(err.message), setFailed(true)));
    return () => abort.current?.abort();
  }, []);
  const choices = catalog.filter((m) => m.modalities.includes(kind));
  useEffect(() => {
    if (!choices.some((m) => m.id === model)) setModel((choices.find((m) => m.live) || choices[0])?.id || "");
  }, [kind, catalog]);

  const make = async (e) => {
    e.preventDefault();
    const text = prompt.trim();
    if (!text || !model) return;
    const body = { modality: kind, model, ...KINDS[kind](text) };
    setLastBody(body);
    setProgress(0);
    setFailed(false);
    setStatus("queued");
    abort.current = new AbortController();
    try {
      const task = await post("/v1/tasks", body);
      await stream(`/v1/tasks/${task.id}/events`, {
        signal: abort.current.signal,
        onEvent: (event, raw) => {
          const data = JSON.parse(raw);
          if (event === "progress") {
            setProgress(data.fraction);
            setStatus(data.message || "working");
          } else if (event === "artifact") {
            setMade((m) => [{ artifact: data.artifact, url: data.url, caption: text, id: `${task.id}-${m.length}` }, ...m]);
          } else if (event === "error") {
            setStatus(data.error.message);
            setFailed(true);
          } else if (event === "final") {
            setProgress(1);
            setStatus(`${kind} ${data.finish_reason} (task ${task.id})`);
          }
        },
      });
    } catch (err) {
      if (err.name !== "AbortError") {
        setStatus(err.message);
        setFailed(true);
      }
    }
  };

  return (
    <>
      <h1>Images, speech and video</h1>
      <p class="muted">Each runs as an async task; its progress streams from the worker through the bus.</p>
      <form class="row" onSubmit={make}>
        <select id="media-kind" aria-label="what to make" value={kind} onChange={(e) => setKind(e.target.value)}>
          {Object.keys(KINDS).map((k) => (
            <option value={k}>{k}</option>
          ))}
        </select>
        <ModelSelect id="media-model" aria-label="model" models={choices} value={model} onChange={setModel} />
        <input
          id="media-prompt"
          aria-label="prompt"
          placeholder={kind === "speech" ? "Text to say" : "A lighthouse at dusk"}
          value={prompt}
          onInput={(e) => setPrompt(e.target.value)}
        />
        <button id="make" class="primary" type="submit" disabled={!model}>
          Make
        </button>
      </form>
      {progress !== null && <progress id="media-progress" max="1" value={progress} />}
      <p id="media-status" class={failed ? "error" : "muted"} aria-live="polite">
        {status}
      </p>
      {lastBody && (
        <details>
          <summary>Request as curl</summary>
          <pre class="code">{asCurl("/v1/tasks", lastBody)}</pre>
        </details>
      )}
      <div class="grid" id="made">
        {made.map((item) => (
          <Made key={item.id} item={item} />
        ))}
      </div>
    </>
  );
}
