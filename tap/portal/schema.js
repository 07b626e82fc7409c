// The schema browser: schemas, tables (description, rows, foreign keys) and columns (ADQL type, unit, UCD,
// description) from /api/v1/tables. A click inserts the name into the query (a column as the query names its table:
// by its alias, or qualified); a table's "query" link writes a first query over it; a foreign key offers the JOIN.
// The filter matches names, descriptions, units and UCDs.
import { el, fmtCount } from "./dom.js";

export function renderSchema(container, tables, { insert, insertColumn, replace, filter = "" }) {
  container.replaceChildren();
  const f = filter.trim().toLowerCase();
  const bySchema = new Map();
  for (const t of tables) {
    // A column matches by its name, its description, unit or UCD ("magnitude", "mag", "phot.mag").
    const matches = (c) => [c.name, c.description, c.unit, c.ucd].some((v) => (v || "").toLowerCase().includes(f));
    const cols = f ? t.columns.filter(matches) : t.columns;
    if (f && !t.name.toLowerCase().includes(f) && !cols.length && !(t.description || "").toLowerCase().includes(f)) continue;
    if (!bySchema.has(t.schema)) bySchema.set(t.schema, []);
    bySchema.get(t.schema).push({ t, cols: f && !t.name.toLowerCase().includes(f) ? cols : t.columns });
  }
  for (const [schema, list] of bySchema) {
    const group = el("details", { class: "schema", open: true }, el("summary", {}, schema));
    for (const { t, cols } of list) {
      const table = el("details", { class: "table", open: !!f && cols.length < t.columns.length });
      const name = el("button", { class: "name", type: "button", title: `Insert ${t.name}` }, t.name.slice(schema.length + 1));
      name.addEventListener("click", (e) => { e.preventDefault(); insert(t.name); });
      const first = el("button", { class: "link", type: "button", title: `Write a first query over ${t.name}` }, "query");
      first.addEventListener("click", (e) => { e.preventDefault(); replace(`SELECT TOP 100 *\nFROM ${t.name}`); });
      table.append(el("summary", {}, name, " ", t.rows != null ? el("span", { class: "rows" }, `${fmtCount(t.rows)} rows`) : "", " ", first));
      if (t.description) table.append(el("p", { class: "description" }, t.description));
      for (const k of t.keys.filter((k) => k.from.toLowerCase() === t.name.toLowerCase())) {
        const join = el("button", { class: "link", type: "button" }, `JOIN ${k.target} ON ${k.fromColumn} = ${k.targetColumn}`);
        join.addEventListener("click", () => insert(`\nJOIN ${k.target} ON ${t.name}.${k.fromColumn} = ${k.target}.${k.targetColumn}`));
        table.append(el("div", { class: "fk" }, "foreign key: ", join));
      }
      const ul = el("ul", { class: "columns" });
      for (const c of cols) {
        const b = el("button", { type: "button", class: "column", title: [c.description, c.ucd && `UCD ${c.ucd}`].filter(Boolean).join("\n") || c.name }, c.name);
        b.addEventListener("click", () => insertColumn(t.name, c.name));
        ul.append(el("li", {}, b, " ", el("span", { class: "type" }, c.datatype), c.unit ? el("span", { class: "unit" }, ` [${c.unit}]`) : "",
          c.ucd ? el("span", { class: "ucd" }, ` ${c.ucd}`) : ""));
      }
      table.append(ul);
      group.append(table);
    }
    container.append(group);
  }
  if (!bySchema.size) container.append(el("p", { class: "muted" }, f ? `Nothing matches "${filter}".` : "No tables."));
}
