// The fleet: nodes by class with state, hardware and live charts (history from the TELEMETRY stream,
// then telemetry pushed over SSE), and the workers with drain and resume.
import { useCallback, useEffect, useMemo, useState } from "preact/hooks";
import { get, post } from "../api.js";
import { Chart } from "../components/chart.jsx";
import { age, mb, num, pct, share } from "../format.js";

const CLASSES = [
  ["datacenter", "Datacenter GPU"],
  ["workstation", "Workstation"],
  ["jetson", "Jetson"],
  ["cpu", "CPU"],
];
const RANGES = [
  [900, "15 min"],
  [3600, "1 h"],
  [21600, "6 h"],
];

function useTick(ms) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

/** Keeps samples inside the chosen range, oldest first. */
const within = (samples, range, now) => samples.filter((s) => s.ts_ms >= now - range * 1000);

function nodeColumns(samples) {
  return [
    samples.map((s) => s.ts_ms / 1000),
    samples.map((s) => s.cpu_pct),
    samples.map((s) => share(s.mem_used_mb, s.mem_total_mb)),
  ];
}

function gpuColumns(samples, index) {
  const g = (s) => s.gpus?.find((x) => x.index === index);
  return [
    samples.map((s) => s.ts_ms / 1000),
    samples.map((s) => g(s)?.util_pct ?? null),
    samples.map((s) => (g(s) ? share(g(s).mem_used_mb, g(s).mem_total_mb) : null)),
    samples.map((s) => g(s)?.temp_c ?? null),
    samples.map((s) => g(s)?.power_w ?? null),
  ];
}

const GPU_SERIES = [
  { label: "util" },
  { label: "memory" },
  { label: "temp", unit: "°C" }, // beside the percentages: a GPU's 30-90 °C reads on the same 0-100
  { label: "power", unit: "W", scale: "W" },
];
const NODE_SERIES = [{ label: "CPU" }, { label: "RAM" }];

function NodeCard({ node, state, ageS, samples, span }) {
  const t = node.telemetry;
  const caps = node.capabilities;
  const nodeData = useMemo(() => nodeColumns(samples), [samples]);
  return (
    <article class="card node" data-node={node.node} data-ts={t?.ts_ms} aria-label={`node ${node.node}`}>
      <header>
        <h3>{node.node}</h3>
        <span class={`state ${state}`}>{state}</span>
      </header>
      <dl class="metrics">
        <dt>heartbeat</dt>
        <dd class="heartbeat">{age(ageS)}</dd>
        <dt>CPU</dt>
        <dd class="cpu">
          {pct(t?.cpu_pct)} {caps ? <span class="muted">of {caps.cpu_cores} cores</span> : null}
        </dd>
        <dt>RAM</dt>
        <dd class="ram">
          {mb(t?.mem_used_mb)} / {mb(t?.mem_total_mb)}
        </dd>
        {caps?.jetson_model ? (
          <>
            <dt>board</dt>
            <dd>{caps.jetson_model}</dd>
          </>
        ) : null}
        {Object.entries(t?.power_rails_w || {}).map(([rail, w]) => (
          <>
            <dt>{rail}</dt>
            <dd>{num(w, " W", 1)}</dd>
          </>
        ))}
        {Object.entries(t?.temps_c || {}).map(([where, c]) => (
          <>
            <dt>{where}</dt>
            <dd>{num(c, " °C")}</dd>
          </>
        ))}
      </dl>
      <Chart data={nodeData} series={NODE_SERIES} span={span} height={130} label={`CPU and RAM of ${node.node}`} />
      {(t?.gpus || []).map((g) => (
        <GpuPanel key={g.index} gpu={g} samples={samples} span={span} />
      ))}
    </article>
  );
}

function GpuPanel({ gpu, samples, span }) {
  const data = useMemo(() => gpuColumns(samples, gpu.index), [samples, gpu.index]);
  return (
    <section class="gpu" data-gpu={gpu.index}>
      <h3>
        GPU {gpu.index} <span class="muted">{gpu.name}</span>
      </h3>
      <dl class="metrics">
        <dt>utilization</dt>
        <dd>{pct(gpu.util_pct)}</dd>
        <dt>memory</dt>
        <dd>
          {mb(gpu.mem_used_mb)} / {mb(gpu.mem_total_mb)}
        </dd>
        <dt>temperature</dt>
        <dd>{num(gpu.temp_c, " °C")}</dd>
        <dt>power</dt>
        <dd>{num(gpu.power_w, " W")}</dd>
      </dl>
      <Chart data={data} series={GPU_SERIES} span={span} height={130} label={`GPU ${gpu.index}`} />
    </section>
  );
}

function Workers({ workers, now }) {
  const [pending, setPending] = useState({});
  const [error, setError] = useState("");
  const act = async (id, action) => {
    setPending({ ...pending, [id]: action });
    setError("");
    try {
      await post(`/v1/admin/workers/${encodeURIComponent(id)}/${action}`);
    } catch (err) {
      setError(`${action} ${id}: ${err.message}`);
      setPending((p) => ({ ...p, [id]: undefined }));
    }
  };
  // A pending action ends when the worker's heartbeat shows it done.
  useEffect(() => {
    const settled = Object.entries(pending).filter(([id, a]) => {
      const w = workers.find((x) => x.worker_id === id);
      return a && w && (a === "drain") === (w.state === "draining");
    });
    if (settled.length) setPending((p) => ({ ...p, ...Object.fromEntries(settled.map(([id]) => [id, undefined])) }));
  }, [workers]);
  return (
    <>
      {error && <p class="error" role="alert">{error}</p>}
      <div class="table-wrap">
        <table id="workers">
          <thead>
            <tr>
              <th>worker</th>
              <th>node</th>
              <th>engine</th>
              <th>models</th>
              <th>state</th>
              <th>free slots</th>
              <th>queue depth</th>
              <th>domain</th>
              <th>heartbeat</th>
              <th>
                <span class="muted">admin</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {workers.map((w) => (
              <tr key={w.worker_id} data-worker={w.worker_id}>
                <td>{w.worker_id}</td>
                <td>{w.node}</td>
                <td>{w.engine}</td>
                <td>
                  <span class="chips">
                    {w.models.map((m) => (
                      <span class="chip">{m}</span>
                    ))}
                  </span>
                </td>
                <td>
                  <span class={`state ${w.state}`} title={w.detail}>
                    {w.state}
                  </span>
                </td>
                <td class="num">
                  {w.slots_free} / {w.slots_total}
                </td>
                <td class="num">{w.outstanding}</td>
                <td>{w.domain}</td>
                <td>{age((now - w.seenAt) / 1000)}</td>
                <td>
                  {w.state === "draining" ? (
                    <button class="resume" disabled={!!pending[w.worker_id]} onClick={() => act(w.worker_id, "resume")}>
                      {pending[w.worker_id] ? "resuming…" : "Resume"}
                    </button>
                  ) : (
                    <button class="drain" disabled={!!pending[w.worker_id]} onClick={() => act(w.worker_id, "drain")}>
                      {pending[w.worker_id] ? "draining…" : "Drain"}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {workers.length === 0 && <p class="muted">No live worker.</p>}
    </>
  );
}

export function Fleet({ events }) {
  const [nodes, setNodes] = useState(null); // name -> node, with seenAt (ms)
  const [workers, setWorkers] = useState({}); // id -> status, with seenAt
  const [deadAfter, setDeadAfter] = useState(10);
  const [range, setRange] = useState(900);
  const [history, setHistory] = useState({}); // node -> telemetry samples, oldest first
  const [error, setError] = useState("");
  const now = useTick(1000);

  const loadSnapshot = useCallback(async () => {
    try {
      const snap = await get("/v1/console/fleet");
      const at = Date.now();
      setDeadAfter(snap.dead_after_s);
      setNodes(Object.fromEntries(snap.nodes.map((n) => [n.node, { ...n, seenAt: n.heartbeat_age_s == null ? null : at - n.heartbeat_age_s * 1000 }])));
      setWorkers(Object.fromEntries(snap.workers.map((w) => [w.worker_id, { ...w, seenAt: at - w.heartbeat_age_s * 1000 }])));
    } catch (err) {
      setError(err.message);
    }
  }, []);

  useEffect(() => {
    loadSnapshot();
  }, []);

  useEffect(() => {
    let current = true;
    get(`/v1/console/history?range_s=${range}&points=300`)
      .then((h) => current && setHistory(Object.fromEntries(h.nodes.map((n) => [n.node, n.samples]))))
      .catch((err) => setError(err.message));
    return () => {
      current = false;
    };
  }, [range]);

  useEffect(() => {
    const offTelemetry = events.subscribe("telemetry", (t) => {
      setNodes((ns) => {
        if (ns && !ns[t.node]) loadSnapshot(); // a new node: its class and capabilities come from the gateway
        return ns && ns[t.node] ? { ...ns, [t.node]: { ...ns[t.node], telemetry: t, seenAt: Date.now() } } : ns;
      });
      setHistory((h) => ({ ...h, [t.node]: within([...(h[t.node] || []), t], range, Date.now()) }));
    });
    const offWorker = events.subscribe("worker", (w) => setWorkers((ws) => ({ ...ws, [w.worker_id]: { ...w, seenAt: Date.now() } })));
    return () => {
      offTelemetry();
      offWorker();
    };
  }, [events, range]);

  if (nodes === null) return error ? <p class="error">{error}</p> : <p class="muted">Loading the fleet…</p>;
  const live = Object.values(workers)
    .filter((w) => now - w.seenAt <= deadAfter * 1000)
    .sort((a, b) => a.worker_id.localeCompare(b.worker_id));
  const stateOf = (n) => {
    if (n.seenAt == null || now - n.seenAt > deadAfter * 1000) return "offline";
    const mine = live.filter((w) => w.node === n.node);
    return mine.length && mine.every((w) => w.state === "draining") ? "draining" : "online";
  };

  return (
    <>
      <div class="row">
        <h1>Fleet</h1>
        <span class="range row" role="group" aria-label="history range">
          {RANGES.map(([s, label]) => (
            <button aria-pressed={range === s} onClick={() => setRange(s)}>
              {label}
            </button>
          ))}
        </span>
      </div>
      {error && <p class="error">{error}</p>}
      {CLASSES.map(([cls, title]) => {
        const members = Object.values(nodes).filter((n) => n.class === cls);
        return members.length ? (
          <section class="node-class" data-class={cls}>
            <h2>
              {title} <span class="muted">({members.length})</span>
            </h2>
            <div class="grid">
              {members.map((n) => (
                <NodeCard
                  key={n.node}
                  node={n}
                  state={stateOf(n)}
                  ageS={n.seenAt == null ? null : (now - n.seenAt) / 1000}
                  samples={within(history[n.node] || [], range, now)}
                  span={range}
                />
              ))}
            </div>
          </section>
        ) : null;
      })}
      <h2>Workers</h2>
      <Workers workers={live} now={now} />
    </>
  );
}
