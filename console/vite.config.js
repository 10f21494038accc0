// Builds the console into the gateway's package, which serves it with a self-only CSP.
import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir: "../services/gateway/console_dist",
    emptyOutDir: true,
    // A data: URI would break `default-src 'self'`: every asset is its own file.
    assetsInlineLimit: 0,
    target: "es2022",
  },
  // Component tests (npm test): pages rendered into happy-dom, the network stubbed at fetch.
  test: { environment: "happy-dom" },
});
