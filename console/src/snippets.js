// "Copy as curl" and "Copy as Python (openai)" of the exact request a playground sends. The key is
// left to an environment variable: a snippet pasted into a ticket should not carry it.
const shellQuote = (s) => `'${s.replace(/'/g, `'\\''`)}'`;

export function asCurl(path, body) {
  return [
    `curl -N ${location.origin}${path}`,
    `  -H "Authorization: Bearer $MODALMESH_API_KEY"`,
    `  -H "Content-Type: application/json"`,
    `  -d ${shellQuote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

// JSON of strings, numbers and lists reads as Python too, except for true/false/null.
const py = (v) => JSON.stringify(v, null, 4).replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");

export function asPythonChat(body) {
  const { model, messages, ...rest } = body;
  const extra = Object.entries(rest).filter(([k]) => k !== "stream");
  return [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${location.origin}/v1", api_key=os.environ["MODALMESH_API_KEY"])`,
    "stream = client.chat.completions.create(",
    `    model=${JSON.stringify(model)},`,
    `    messages=${py(messages).replace(/\n/g, "\n    ")},`,
    ...extra.map(([k, v]) => `    ${k}=${py(v)},`),
    "    stream=True,",
    ")",
    "for chunk in stream:",
    "    if chunk.choices:",
    '        print(chunk.choices[0].delta.content or "", end="", flush=True)',
    "print()",
  ].join("\n");
}

export function asPythonEmbeddings(body) {
  return [
    "import os",
    "from openai import OpenAI",
    "",
    `client = OpenAI(base_url="${location.origin}/v1", api_key=os.environ["MODALMESH_API_KEY"])`,
    `result = client.embeddings.create(model=${JSON.stringify(body.model)}, input=${py(body.input).replace(/\n/g, "\n    ")})`,
    "for item in result.data:",
    "    print(item.index, len(item.embedding), item.embedding[:4])",
  ].join("\n");
}
