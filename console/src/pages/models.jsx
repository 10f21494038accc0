// The catalog: each model's state and why, replicas and where, priority; load, unload, pin and priority
// through the admin API. Refreshed when a worker's heartbeat says something changed (pushed, not polled).
import { useState } from "preact/hooks";
import { get, post } from "../api.js";
import { mb } from "../format.js";
import { useReloadOn } from "../reload.js";

function PriorityEditor({ model, onDone, onError }) {
  const [value, setValue] = useState(model.priority);
  const save = async (e) => {
    e.preventDefault();
    try {
      onDone(await post(`/v1/admin/models/${encodeURIComponent(model.id)}/priority`, { priority: Number(value) }));
    } catch (err) {
      onError(`priority ${model.id}: ${err.message}`);
    }
  };
  return (
    <form class="row" onSubmit={save}>
      <input
        type="number"
        min="1"
        max="10"
        value={value}
        aria-label={`priority of ${model.id}`}
        class="priority"
        onInput={(e) => setValue(e.target.value)}
        disabled={!model.declared}
      />
      <button type="submit" disabled={!model.declared || Number(value) === model.priority}>
        Set
      </button>
    </form>
  );
}

function ModelRow({ model, onChange, onError }) {
  const [busy, setBusy] = useState("");
  const [pinning, setPinning] = useState(null); // the box shows the asked state until the gateway answers
  const act = async (action, body) => {
    setBusy(action);
    try {
      onChange(await post(`/v1/admin/models/${encodeURIComponent(model.id)}/${action}`, body));
    } catch (err) {
      onError(`${action} ${model.id}: ${err.message}`);
    } finally {
      setBusy("");
    }
  };
  const placed = model.declared;
  const why = placed ? "" : "runs on its own worker: declare it in the catalog file to place it";
  return (
    <tr data-model={model.id}>
      <td>
        <strong>{model.id}</strong>
        <div class="muted">
          {model.engine} · {model.modalities.join(", ")}
        </div>
        <div class="muted">{placed ? "placed by the scheduler" : "on its own worker"}</div>
      </td>
      <td>
        <span class={`state ${model.state}`}>{model.state}</span>
        {model.reason && <div class="muted reason">{model.reason}</div>}
      </td>
      <td>
        {model.replicas.length === 0 ? (
          <span class="muted">none</span>
        ) : (
          <span class="chips">
            {model.replicas.map((r) => (
              <span class="chip" title={`${r.state} since ${new Date(r.since_ms).toLocaleTimeString()}`}>
                {r.worker}@{r.node} · {r.state}
              </span>
            ))}
          </span>
        )}
        <div class="muted">
          min {model.min_replicas}, max {model.max_replicas}
        </div>
      </td>
      <td class="num">{mb(model.memory_mb)}</td>
      <td>
        <PriorityEditor model={model} onDone={onChange} onError={onError} />
        <span class="muted">{model.priority_class}</span>
      </td>
      <td>
        <div class="row" title={why}>
          <button class="load" disabled={!placed || !!busy} onClick={() => act("load")}>
            Load
          </button>
          <button class="unload" disabled={!placed || !!busy} onClick={() => act("unload")}>
            Unload
          </button>
          <label>
            <input
              type="checkbox"
              class="pin"
              checked={pinning ?? model.pinned}
              disabled={!placed || !!busy}
              onChange={(e) => {
                setPinning(e.target.checked);
                act("pin", { pinned: e.target.checked }).finally(() => setPinning(null));
              }}
            />{" "}
            pinned
          </label>
        </div>
      </td>
    </tr>
  );
}

export function Models({ events }) {
  const [models, setModels] = useState(null);
  const [error, setError] = useState("");

  const load = () =>
    get("/v1/admin/models")
      .then((m) => setModels(m.data))
      .catch((err) => setError(err.status === 403 ? "The models page needs an admin key." : err.message));

  // Heartbeats carry each replica's state: refetch at most every 2 s while they come.
  useReloadOn(events, "worker", load);

  const replace = (row) => setModels((ms) => ms.map((m) => (m.id === row.id ? row : m)));
  if (models === null) return error ? <p class="error">{error}</p> : <p class="muted">Loading the catalog…</p>;
  return (
    <>
      <h1>Models</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="table-wrap">
        <table id="models">
          <thead>
            <tr>
              <th>model</th>
              <th>state</th>
              <th>replicas</th>
              <th>memory</th>
              <th>priority</th>
              <th>actions</th>
            </tr>
          </thead>
          <tbody>
            {models.map((m) => (
              <ModelRow key={m.id} model={m} onChange={replace} onError={setError} />
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
