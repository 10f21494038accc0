// The API client's SSE reader: events split across reads, CRLF line ends, several data lines, the key sent.
import { afterEach, expect, test, vi } from "vitest";
import { setKey, stream } from "./api.js";

function respond(...pieces) {
  const body = new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(new TextEncoder().encode(piece));
      controller.close();
    },
  });
  return vi.fn(async () => new Response(body, { headers: { "content-type": "text/event-stream" } }));
}

afterEach(() => vi.unstubAllGlobals());

test("events arrive whole however the bytes are cut", async () => {
  const fetch = respond("event: telemetry\r\ndata: {\"a\"", ":1}\r\n\r\nevent: worker\ndata: x\ndata: y\n\n", "data: [DONE]\n\n");
  vi.stubGlobal("fetch", fetch);
  setKey("sk-test");
  const seen = [];
  await stream("/v1/console/events", { onEvent: (event, data) => seen.push([event, data]) });
  expect(seen).toEqual([
    ["telemetry", '{"a":1}'],
    ["worker", "x\ny"],
    ["message", "[DONE]"],
  ]);
  const [path, init] = fetch.mock.calls[0];
  expect(path).toBe("/v1/console/events");
  expect(init.headers.Authorization).toBe("Bearer sk-test");
});

test("an error answer throws the gateway's message", async () => {
  const body = JSON.stringify({ error: { message: "Incorrect API key provided", code: "invalid_api_key" } });
  vi.stubGlobal("fetch", vi.fn(async () => new Response(body, { status: 401 })));
  await expect(stream("/v1/console/events", { onEvent: () => {} })).rejects.toMatchObject({
    status: 401,
    code: "invalid_api_key",
    message: "Incorrect API key provided",
  });
});
