// Recent requests and tasks of every modality: searchable, each opening to its result (text, pictures,
// sound) with its timings. Refreshed when worker heartbeats say work moved (pushed, not polled).
import { useEffect, useState } from "preact/hooks";
import { get } from "../api.js";
import { useReloadOn } from "../reload.js";

const ms = (v) => (v == null ? "–" : v < 1000 ? `${v.toFixed(0)} ms` : `${(v / 1000).toFixed(2)} s`);

function Detail({ state }) {
  const [task, setTask] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    setTask(null);
    get(`/v1/tasks/${encodeURIComponent(state.request_id)}`)
      .then(setTask)
      .catch((err) => setError(err.message));
  }, [state.request_id, state.status]);
  const media = task?.result?.files || [];
  return (
    <section class="card" id="request-detail" aria-label={`request ${state.request_id}`}>
      <h2>{state.request_id}</h2>
      <dl class="metrics">
        <dt>status</dt>
        <dd>{state.status}</dd>
        <dt>time</dt>
        <dd>{new Date(state.created_ms).toLocaleString()}</dd>
        <dt>engine first output</dt>
        <dd>{ms(state.timings?.engine_ttft_ms)}</dd>
        <dt>engine total</dt>
        <dd>{ms(state.timings?.engine_total_ms)}</dd>
        <dt>attempts</dt>
        <dd>{state.attempts}</dd>
        {state.error && (
          <>
            <dt>error</dt>
            <dd class="error">{state.error}</dd>
          </>
        )}
      </dl>
      {state.text && <pre class="code result-text">{state.text}</pre>}
      {error && <p class="error">{error}</p>}
      <div class="grid">
        {media
          .filter((m) => m.url)
          .map((m) => {
            const type = m.content_type || "";
            return type.startsWith("image/") ? (
              <img src={m.url} alt={state.request_id} />
            ) : type.startsWith("audio/") ? (
              <audio src={m.url} controls />
            ) : type.startsWith("video/") ? (
              <video src={m.url} controls />
            ) : (
              <a href={m.url}>download</a>
            );
          })}
      </div>
    </section>
  );
}

export function Requests({ events }) {
  const [rows, setRows] = useState(null);
  const [error, setError] = useState("");
  const [query, setQuery] = useState("");
  const [open, setOpen] = useState(null);

  const load = () =>
    get("/v1/console/requests?limit=200")
      .then((r) => setRows(r.data))
      .catch((err) => setError(err.message));
  useReloadOn(events, "worker", load);

  if (rows === null) return error ? <p class="error">{error}</p> : <p class="muted">Loading requests…</p>;
  const q = query.trim().toLowerCase();
  const shown = q
    ? rows.filter((r) => [r.request_id, r.model, r.modality, r.status, r.error || ""].some((v) => v.toLowerCase().includes(q)))
    : rows;
  const selected = open && rows.find((r) => r.request_id === open);
  return (
    <>
      <div class="row">
        <h1>Requests</h1>
        <input
          id="request-search"
          type="search"
          aria-label="search requests"
          placeholder="id, model, modality, status, error"
          value={query}
          onInput={(e) => setQuery(e.target.value)}
        />
        <span class="muted">
          {shown.length} of {rows.length}
        </span>
      </div>
      {error && <p class="error">{error}</p>}
      {selected && <Detail state={selected} />}
      <div class="table-wrap">
        <table id="requests">
          <thead>
            <tr>
              <th>request</th>
              <th>modality</th>
              <th>model</th>
              <th>status</th>
              <th>attempts</th>
              <th>time</th>
              <th>engine first output</th>
              <th>engine total</th>
              <th>tokens</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <tr key={r.request_id} data-request={r.request_id}>
                <td>
                  <button class="link-button" aria-expanded={open === r.request_id} onClick={() => setOpen(open === r.request_id ? null : r.request_id)}>
                    {r.request_id}
                  </button>
                </td>
                <td>{r.modality || "–"}</td>
                <td>{r.model || "–"}</td>
                <td>
                  <span class={`state ${r.status === "completed" ? "running" : r.status === "failed" ? "error" : "starting"}`}>{r.status}</span>
                </td>
                <td class="num">{r.attempts}</td>
                <td>{new Date(r.created_ms).toLocaleTimeString()}</td>
                <td class="num">{ms(r.timings?.engine_ttft_ms)}</td>
                <td class="num">{ms(r.timings?.engine_total_ms)}</td>
                <td class="num">{r.usage ? `${r.usage.prompt_tokens} → ${r.usage.completion_tokens}` : "–"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
