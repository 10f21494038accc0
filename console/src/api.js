// The one module that talks to the gateway: it knows the API key, the JSON calls and the SSE streams.

const KEY_STORE = "modalmesh-key"; // the same name the first page used, so a saved key carries over

// `make run` prints the URL with #key=...: a fragment never leaves the browser. Take it once, keep it
// in local storage, and drop it from the address bar.
export function takeKeyFromUrl() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    localStorage.setItem(KEY_STORE, key);
    history.replaceState(null, "", location.pathname + "#/fleet");
  }
}

export const getKey = () => localStorage.getItem(KEY_STORE) || "";
export const setKey = (key) => localStorage.setItem(KEY_STORE, key);

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const authHeaders = () => ({ Authorization: `Bearer ${getKey()}` });

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  let code;
  try {
    const body = await res.json();
    message = body.error?.message || message;
    code = body.error?.code;
  } catch {
    // not JSON: the status line says enough
  }
  return new ApiError(res.status, message, code);
}

/** A JSON call; throws ApiError with the gateway's OpenAI-shaped message on a non-2xx answer. */
export async function call(method, path, body) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw await failure(res);
  return res.json();
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});

/**
 * Reads a server-sent event stream from fetch (EventSource cannot send the Authorization header),
 * calling onEvent(event, data) per event until the stream ends or `signal` aborts.
 */
export async function stream(path, { method = "GET", body, signal, onEvent }) {
  const headers = { ...authHeaders(), Accept: "text/event-stream" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(event, data.join("\n"));
    }
  }
}

/**
 * The fleet's live events (telemetry, worker, alert), one stream per open console shared by every page:
 * subscribe(kind, fn) returns its unsubscribe. Reconnects with a growing pause after a break.
 */
export function fleetEvents() {
  const handlers = new Map();
  const status = new Set();
  let controller = null;
  let stopped = false;

  const emit = (kind, value) => (handlers.get(kind) || []).forEach((fn) => fn(value));
  const setStatus = (value) => status.forEach((fn) => fn(value));

  async function run() {
    let pause = 500;
    while (!stopped) {
      controller = new AbortController();
      try {
        setStatus("connecting");
        await stream("/v1/console/events", {
          signal: controller.signal,
          onEvent: (event, data) => {
            if (event === "ready") {
              pause = 500;
              setStatus("live");
            } else emit(event, JSON.parse(data));
          },
        });
      } catch (err) {
        if (stopped) return;
        setStatus(err instanceof ApiError ? `error: ${err.message}` : "reconnecting");
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, 10_000);
    }
  }

  return {
    start() {
      stopped = false;
      run();
    },
    restart() {
      controller?.abort();
    },
    stop() {
      stopped = true;
      controller?.abort();
    },
    subscribe(kind, fn) {
      if (!handlers.has(kind)) handlers.set(kind, new Set());
      handlers.get(kind).add(fn);
      return () => handlers.get(kind).delete(fn);
    },
    onStatus(fn) {
      status.add(fn);
      return () => status.delete(fn);
    },
  };
}
