// Lists every package bundled (all of node_modules but the bundler) with its version and licence; fails on a
// licence that does not fit the project's Apache-2.0 licence.
import { readdirSync, readFileSync, existsSync } from "node:fs";
const allowed = new Set(["MIT", "ISC", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "0BSD"]);
const rows = [];
const visit = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".")) continue;
    if (name.startsWith("@")) { visit(`${dir}/${name}`); continue; }
    const manifest = `${dir}/${name}/package.json`;
    if (!existsSync(manifest)) continue;
    const p = JSON.parse(readFileSync(manifest, "utf8"));
    if (p.name === "esbuild" || p.name.startsWith("@esbuild/")) continue;
    const licence = typeof p.license === "string" ? p.license : JSON.stringify(p.license);
    if (!allowed.has(licence)) {
      console.error(`${p.name}@${p.version}: licence ${licence} is not one the portal may ship`);
      process.exit(1);
    }
    rows.push(`| ${p.name} | ${p.version} | ${licence} |`);
  }
};
visit("node_modules");
console.log("# Third-party code in codemirror.js\n");
console.log("Bundled by `../vendor-src/build.sh` from the versions pinned in `../vendor-src/package-lock.json`.\n");
console.log("| package | version | licence |\n|---|---|---|");
console.log(rows.join("\n"));
