// Small display helpers shared by the pages.
export const pct = (v) => (v == null ? "–" : `${v.toFixed(0)}%`);
export const mb = (v) => (v == null ? "–" : v >= 1024 ? `${(v / 1024).toFixed(1)} GiB` : `${v.toFixed(0)} MiB`);
export const num = (v, unit = "", digits = 0) => (v == null ? "–" : `${v.toFixed(digits)}${unit}`);
export const age = (s) => (s == null ? "never" : (s = Math.max(0, s)) < 60 ? `${s.toFixed(0)} s ago` : s < 3600 ? `${(s / 60).toFixed(0)} min ago` : `${(s / 3600).toFixed(1)} h ago`);
export const share = (used, total) => (total ? (100 * used) / total : null);
