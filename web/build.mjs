// Builds the dashboard and the API docs into dist/, which the api binary
// embeds: everything works offline, nothing is fetched from a CDN.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/app.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  outfile: "dist/app.js",
  logLevel: "warning",
});
for (const [from, to] of [
  ["src/index.html", "index.html"],
  ["src/styles.css", "styles.css"],
  ["src/docs.html", "docs.html"],
  ["src/docs.js", "docs.js"],
  ["node_modules/uplot/dist/uPlot.min.css", "uplot.css"],
  ["node_modules/swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-bundle.js"],
  ["node_modules/swagger-ui-dist/swagger-ui.css", "swagger-ui.css"],
]) {
  copyFileSync(from, `dist/${to}`);
}
