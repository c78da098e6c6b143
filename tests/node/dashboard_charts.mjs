// Runs static/dashboard/dashboard.js with the page's JSON (argv[2]: a file) and a recording stand-in for
// Chart.js, and prints the config each chart was drawn with (or "empty"), as JSON. No browser needed.
import { readFileSync } from "node:fs";
import vm from "node:vm";

const data = readFileSync(process.argv[2], "utf8");
const script = readFileSync(new URL("../../static/dashboard/dashboard.js", import.meta.url), "utf8");
const drawn = {};
const listeners = {};
const element = (id) => ({
  id, style: {}, textContent: id === "dashboard-data" ? data : "",
  parentNode: { appendChild: () => { drawn[id] = "empty"; } },
});
const document = {
  getElementById: (id) => element(id),
  createElement: () => ({}),
  addEventListener: (name, fn) => { listeners[name] = fn; },
  body: { setAttribute: () => {} },
};
function Chart(canvas, config) { drawn[canvas.id] = config; }
const window = { Chart };
vm.runInNewContext(script, { window, document, Object, JSON });
listeners.DOMContentLoaded();
console.log(JSON.stringify(drawn, (key, value) => (typeof value === "function" ? "<function>" : value)));
