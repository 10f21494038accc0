// Embeddings: a few texts, one a line, embedded in one request; their cosine similarities as a matrix.
import { useEffect, useState } from "preact/hooks";
import { get, post } from "../api.js";
import { ModelSelect } from "../components/model-select.jsx";
import { asCurl, asPythonEmbeddings } from "../snippets.js";

const EXAMPLE = ["A cat sits on the mat.", "A kitten is resting on a rug.", "The stock market fell sharply today."];

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

function Matrix({ texts, vectors }) {
  return (
    <div class="table-wrap">
      <table id="similarity">
        <thead>
          <tr>
            <th />
            {texts.map((_, j) => (
              <th>{j + 1}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {texts.map((text, i) => (
            <tr>
              <th title={text}>
                {i + 1}. {text.length > 40 ? `${text.slice(0, 40)}…` : text}
              </th>
              {vectors.map((_, j) => {
                const sim = cosine(vectors[i], vectors[j]);
                return (
                  <td class="num sim" style={{ "--sim": Math.max(0, sim).toFixed(3) }} data-sim={sim.toFixed(4)}>
                    {sim.toFixed(2)}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function Embeddings() {
  const [models, setModels] = useState([]);
  const [model, setModel] = useState("");
  const [input, setInput] = useState(EXAMPLE.join("\n"));
  const [result, setResult] = useState(null);
  const [body, setBody] = useState(null);
  const [status, setStatus] = useState("");
  const [failed, setFailed] = useState(false);

  useEffect(() => {
    get("/v1/models")
      .then((m) => {
        const choices = m.data.filter((x) => x.modalities.includes("embedding"));
        setModels(choices);
        setModel((choices.find((x) => x.live) || choices[0])?.id || "");
      })
      .catch((err) => (setStatus(err.message), setFailed(true)));
  }, []);

  const compare = async (e) => {
    e.preventDefault();
    const texts = input.split("\n").map((t) => t.trim()).filter(Boolean);
    if (!texts.length || !model) return;
    const request = { model, input: texts };
    setBody(request);
    setStatus("embedding…");
    setFailed(false);
    const started = performance.now();
    try {
      const answer = await post("/v1/embeddings", request);
      const vectors = [...answer.data].sort((a, b) => a.index - b.index).map((d) => d.embedding);
      setResult({ texts, vectors });
      setStatus(`${texts.length} vectors of ${vectors[0].length} dimensions in ${(performance.now() - started).toFixed(0)} ms, ${answer.usage.prompt_tokens} tokens`);
    } catch (err) {
      setStatus(err.message);
      setFailed(true);
    }
  };

  return (
    <>
      <h1>Embeddings</h1>
      <form onSubmit={compare}>
        <label class="field">
          model
          <ModelSelect id="embedding-model" models={models} value={model} onChange={setModel} />
        </label>
        <label class="field">
          texts, one a line
          <textarea id="embedding-texts" rows={5} value={input} onInput={(e) => setInput(e.target.value)} />
        </label>
        <button id="embed" class="primary" type="submit" disabled={!model}>
          Compare
        </button>
      </form>
      <p id="embedding-status" class={failed ? "error" : "muted"} aria-live="polite">
        {status}
      </p>
      {result && <Matrix texts={result.texts} vectors={result.vectors} />}
      {body && (
        <>
          <details>
            <summary>curl</summary>
            <pre class="code" id="embedding-curl">{asCurl("/v1/embeddings", body)}</pre>
          </details>
          <details>
            <summary>Python (openai)</summary>
            <pre class="code" id="embedding-python">{asPythonEmbeddings(body)}</pre>
          </details>
        </>
      )}
    </>
  );
}
