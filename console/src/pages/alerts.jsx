// Alerts from the monitors and the scheduler: those firing now and the latest transitions.
import { useEffect, useState } from "preact/hooks";
import { get } from "../api.js";
import { num } from "../format.js";

function AlertTable({ id, alerts }) {
  if (!alerts.length) return <p class="muted">None.</p>;
  return (
    <div class="table-wrap">
      <table id={id}>
        <thead>
          <tr>
            <th>when</th>
            <th>alert</th>
            <th>node</th>
            <th>severity</th>
            <th>state</th>
            <th>value / threshold</th>
            <th>message</th>
          </tr>
        </thead>
        <tbody>
          {alerts.map((a) => (
            <tr>
              <td>{new Date(a.ts_ms).toLocaleString()}</td>
              <td>
                {a.name}
                {a.subject_key && <span class="muted"> {a.subject_key}</span>}
              </td>
              <td>{a.node}</td>
              <td>
                <span class={`state ${a.severity === "critical" ? "error" : a.severity === "warning" ? "draining" : ""}`}>{a.severity}</span>
              </td>
              <td>{a.state}</td>
              <td class="num">
                {num(a.value, "", 1)} / {num(a.threshold, "", 1)}
              </td>
              <td>{a.message}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Alerts({ events }) {
  const [alerts, setAlerts] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    const load = () =>
      get("/v1/alerts?limit=200")
        .then(setAlerts)
        .catch((err) => setError(err.message));
    load();
    return events.subscribe("alert", load);
  }, [events]);
  if (alerts === null) return error ? <p class="error">{error}</p> : <p class="muted">Loading alerts…</p>;
  return (
    <>
      <h1>Alerts</h1>
      <h2>Firing now</h2>
      <AlertTable id="alerts-active" alerts={alerts.active} />
      <h2>Recent</h2>
      <AlertTable id="alerts-recent" alerts={alerts.recent} />
    </>
  );
}
