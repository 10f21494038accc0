// The chat playground: a streamed answer, the exact request as curl or Python, and the conversation kept
// in this browser's local storage so it survives a reload (not yet on the server: that is a later step).
import { useEffect, useRef, useState } from "preact/hooks";
import { get, stream } from "../api.js";
import { ModelSelect } from "../components/model-select.jsx";
import { asCurl, asPythonChat } from "../snippets.js";

const STORE = "modalmesh-chat";
const PATH = "/v1/chat/completions";

function loadSaved() {
  try {
    return JSON.parse(localStorage.getItem(STORE)) || {};
  } catch {
    return {};
  }
}

function Snippets({ body }) {
  const [copied, setCopied] = useState("");
  if (!body) return <p class="muted">Send a message to see its request as code.</p>;
  const snippets = { curl: asCurl(PATH, body), python: asPythonChat(body) };
  const copy = async (kind) => {
    try {
      await navigator.clipboard.writeText(snippets[kind]);
      setCopied(kind);
    } catch {
      setCopied(`${kind}-failed`);
    }
  };
  return (
    <>
      <div class="row">
        <button id="copy-curl" onClick={() => copy("curl")}>
          Copy as curl
        </button>
        <button id="copy-python" onClick={() => copy("python")}>
          Copy as Python (openai)
        </button>
        <span class="muted" aria-live="polite">
          {copied.endsWith("failed") ? "the browser refused the clipboard: select the text below" : copied && "copied"}
        </span>
      </div>
      <details>
        <summary>curl</summary>
        <pre class="code" id="snippet-curl">{snippets.curl}</pre>
      </details>
      <details>
        <summary>Python (openai)</summary>
        <pre class="code" id="snippet-python">{snippets.python}</pre>
      </details>
    </>
  );
}

export function Chat() {
  const saved = loadSaved();
  const [models, setModels] = useState([]);
  const [model, setModel] = useState(saved.model || "");
  const [messages, setMessages] = useState(saved.messages || []);
  const [lastBody, setLastBody] = useState(saved.lastBody || null);
  const [prompt, setPrompt] = useState("");
  const [maxTokens, setMaxTokens] = useState(saved.maxTokens || 64);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState("");
  const [error, setError] = useState("");
  const abort = useRef(null);
  const log = useRef(null);

  useEffect(() => {
    let again;
    const load = () =>
      get("/v1/models")
        .then((m) => {
          const chat = m.data.filter((x) => x.modalities.includes("chat"));
          setModels(chat);
          if (!chat.some((x) => x.id === model) && chat.length) setModel((chat.find((x) => x.live) || chat[0]).id);
          // Opened while the workers start (or miss a heartbeat): look again until a chat model is live.
          if (!chat.some((x) => x.live)) again = setTimeout(load, 2000);
        })
        .catch((err) => setError(err.message));
    load();
    return () => {
      clearTimeout(again);
      abort.current?.abort();
    };
  }, []);

  useEffect(() => {
    localStorage.setItem(STORE, JSON.stringify({ model, messages, lastBody, maxTokens }));
    log.current?.scrollTo(0, log.current.scrollHeight);
  }, [model, messages, lastBody, maxTokens]);

  const send = async (e) => {
    e.preventDefault();
    if (!prompt.trim() || busy) return;
    const history = [...messages.filter((m) => m.role !== "error"), { role: "user", content: prompt }];
    const body = { model, messages: history, max_tokens: Number(maxTokens), stream: true, stream_options: { include_usage: true } };
    setMessages([...history, { role: "assistant", content: "" }]);
    setLastBody(body);
    setPrompt("");
    setBusy(true);
    setError("");
    setStatus("waiting for the first token…");
    abort.current = new AbortController();
    const started = performance.now();
    let chunks = 0;
    let ttft = null;
    let usage = null;
    let text = "";
    try {
      await stream(PATH, {
        method: "POST",
        body,
        signal: abort.current.signal,
        onEvent: (_, data) => {
          if (data === "[DONE]") return;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message);
          usage = chunk.usage || usage;
          const delta = chunk.choices?.[0]?.delta?.content;
          if (!delta) return;
          ttft ??= performance.now() - started;
          chunks += 1;
          text += delta;
          setMessages([...history, { role: "assistant", content: text }]);
          setStatus(`${chunks} chunks…`);
        },
      });
      const secs = ((performance.now() - started) / 1000).toFixed(2);
      setStatus(
        `${chunks} chunks in ${secs} s, first after ${ttft == null ? "–" : ttft.toFixed(0)} ms` +
          (usage ? `, ${usage.completion_tokens} tokens` : ""),
      );
    } catch (err) {
      if (err.name !== "AbortError") {
        setMessages([...history, ...(text ? [{ role: "assistant", content: text }] : []), { role: "error", content: err.message }]);
        setStatus("");
      }
    } finally {
      setBusy(false);
    }
  };

  const clear = () => {
    setMessages([]);
    setStatus("");
  };

  return (
    <>
      <h1>Chat</h1>
      {error && <p class="error">{error}</p>}
      <div class="chat">
        <section>
          <div class="log" id="chat-log" ref={log} aria-live="polite">
            {messages.length === 0 && <p class="muted">No messages yet. The conversation is kept in this browser.</p>}
            {messages.map((m, i) => (
              <div class={`msg ${m.role}`} key={i}>
                {m.content}
              </div>
            ))}
          </div>
          <form class="composer" onSubmit={send}>
            <textarea
              id="prompt"
              aria-label="message"
              placeholder="Message (Enter sends, Shift+Enter for a new line)"
              value={prompt}
              onInput={(e) => setPrompt(e.target.value)}
              onKeyDown={(e) => e.key === "Enter" && !e.shiftKey && send(e)}
            />
            <div class="stack">
              {busy ? (
                <button type="button" onClick={() => abort.current?.abort()}>
                  Stop
                </button>
              ) : (
                <button id="send" class="primary" type="submit" disabled={!model}>
                  Send
                </button>
              )}
              <button type="button" onClick={clear} disabled={busy}>
                Clear
              </button>
            </div>
          </form>
          <p id="chat-status" class="muted" aria-live="polite">
            {status}
          </p>
        </section>
        <aside>
          <label class="field">
            model
            <ModelSelect id="chat-model" models={models} value={model} onChange={setModel} />
          </label>
          <label class="field">
            max tokens
            <input type="number" min="1" max="4096" value={maxTokens} onInput={(e) => setMaxTokens(e.target.value)} />
          </label>
          <h2>Request as code</h2>
          <Snippets body={lastBody} />
        </aside>
      </div>
    </>
  );
}
