// A time-series chart (uPlot on a canvas): created once, fed new columns on every update.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const COLORS = ["#3b82f6", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#06b6d4"];

function options(width, height, series, span) {
  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue("--muted").trim() || "#888";
  const grid = css.getPropertyValue("--border").trim() || "#ccc";
  const axis = (scale, side) => ({ scale, side, stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } });
  const scales = [...new Set(series.map((s) => s.scale || "%"))];
  return {
    width,
    height,
    cursor: { drag: { x: false, y: false } },
    legend: { live: false }, // series names only: values belong to the cards beside the chart
    scales: {
      // The x axis shows the chosen range up to now, however few samples it holds yet.
      x: { time: true, range: () => [Date.now() / 1000 - span.current, Date.now() / 1000] },
      ...Object.fromEntries(scales.map((s) => [s, s === "%" ? { range: [0, 100] } : { auto: true }])),
    },
    axes: [
      axis("x", 2),
      ...scales.map((s, i) => ({
        ...axis(s, i ? 1 : 3),
        label: [...new Set(series.filter((x) => (x.scale || "%") === s).map((x) => x.unit ?? "%"))].join(" · "),
        grid: { show: i === 0, stroke: grid },
      })),
    ],
    series: [
      {},
      ...series.map((s, i) => ({
        label: s.label,
        scale: s.scale || "%",
        stroke: COLORS[i % COLORS.length],
        width: 1.5,
        spanGaps: false,
        value: (u, v) => (v == null ? "–" : `${v.toFixed(1)} ${s.unit ?? "%"}`),
      })),
    ],
  };
}

/** `data` is uPlot's columns: [epoch seconds, ...one array per entry of `series`]; `span` the seconds shown. */
export function Chart({ data, series, span = 900, height = 160, label }) {
  const box = useRef(null);
  const plot = useRef(null);
  const spanRef = useRef(span);
  spanRef.current = span;
  const seriesKey = series.map((s) => s.label).join("|");

  useEffect(() => {
    const el = box.current;
    plot.current = new uPlot(options(el.clientWidth || 320, height, series, spanRef), data, el);
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: el.clientWidth, height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.current.destroy();
      plot.current = null;
    };
  }, [seriesKey, height]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <div class="chart" ref={box} role="img" aria-label={label} />;
}
