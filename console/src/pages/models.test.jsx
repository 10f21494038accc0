// The Models page rendered: a model the scheduler places offers its actions, one on its own worker
// does not; Unload posts to the admin API with the key and shows the row the gateway answers.
import { render } from "preact";
import { act } from "preact/test-utils";
import { afterEach, expect, test, vi } from "vitest";
import { setKey } from "../api.js";
import { Models } from "./models.jsx";

const row = (id, declared, state) => ({
  id,
  declared,
  state,
  reason: "",
  engine: "llama_cpp",
  modalities: ["chat"],
  replicas: state === "running" ? [{ worker: "w1", node: "n1", state, since_ms: 0 }] : [],
  min_replicas: 0,
  max_replicas: 1,
  memory_mb: 80,
  priority: 5,
  priority_class: "interactive",
  pinned: false,
});
const events = { subscribe: () => () => {} };
const settle = () => act(() => new Promise((r) => setTimeout(r, 0)));

afterEach(() => {
  vi.unstubAllGlobals();
  document.body.innerHTML = "";
});

test("actions follow placement, and unload shows the answered state", async () => {
  const fetch = vi.fn(async (path, init) => {
    if (path === "/v1/admin/models") return Response.json({ data: [row("placed", true, "running"), row("own", false, "running")] });
    if (path === "/v1/admin/models/placed/unload" && init.method === "POST") return Response.json(row("placed", true, "stopped"));
    return new Response("{}", { status: 404 });
  });
  vi.stubGlobal("fetch", fetch);
  setKey("sk-admin");
  const root = document.createElement("div");
  document.body.append(root);
  await act(() => render(<Models events={events} />, root));
  await settle();
  const placed = root.querySelector("tr[data-model='placed']");
  const own = root.querySelector("tr[data-model='own']");
  expect(own.querySelector("button.unload").disabled).toBe(true);
  expect(placed.querySelector("button.unload").disabled).toBe(false);
  expect(placed.querySelector(".chip").textContent).toBe("w1@n1 · running");
  await act(() => placed.querySelector("button.unload").click());
  await settle();
  const [path, init] = fetch.mock.calls.at(-1);
  expect([path, init.method, init.headers.Authorization]).toEqual(["/v1/admin/models/placed/unload", "POST", "Bearer sk-admin"]);
  expect(root.querySelector("tr[data-model='placed'] .state").textContent).toBe("stopped");
});

test("a key that is not an admin's is told so", async () => {
  const denied = { error: { message: "The key `k` may not use the admin API", code: "permission_denied" } };
  vi.stubGlobal("fetch", vi.fn(async () => Response.json(denied, { status: 403 })));
  const root = document.createElement("div");
  document.body.append(root);
  await act(() => render(<Models events={events} />, root));
  await settle();
  expect(root.textContent).toContain("needs an admin key");
});
