// The copied code: a prompt with quotes stays one shell word; the Python is the same request.
import { expect, test } from "vitest";
import { asCurl, asPythonChat } from "./snippets.js";

const body = { model: "m", messages: [{ role: "user", content: "it's \"quoted\"" }], max_tokens: 8, stream: true };

test("curl quotes the body for the shell", () => {
  const curl = asCurl("/v1/chat/completions", body);
  const quoted = curl.slice(curl.indexOf("-d ") + 3);
  // Undo POSIX single-quoting: 'it'\''s' -> it's
  const unquoted = quoted.slice(1, -1).replaceAll("'\\''", "'");
  expect(JSON.parse(unquoted)).toEqual(body);
  expect(curl).toContain("$MODALMESH_API_KEY");
});

test("python names the model, the messages and the options", () => {
  const python = asPythonChat(body);
  expect(python).toContain('model="m"');
  expect(python).toContain("max_tokens=8");
  expect(python).toContain("stream=True");
  expect(python).toContain('"content": "it\'s \\"quoted\\""');
});
