// The ADQL editor: CodeMirror 6 with an ADQL dialect (its keywords, types and geometry functions), completion of
// tables, `alias.` columns and functions from the service's own metadata, and the server's parser checking the
// text as it is typed (errors shown at their line:column).
import {
  EditorView, basicSetup, EditorState, Prec, Compartment, keymap, placeholder,
  sql, SQLDialect, autocompletion, linter, lintGutter, keywordCompletionSource, schemaCompletionSource,
} from "./vendor/codemirror.js";
import * as api from "./api.js";

const KEYWORDS = [
  "select top distinct all from where group by having order asc desc as and or not null is in between like ilike",
  "join inner left right full outer natural cross on using union intersect except with offset exists case when then",
  "else end true false cast coalesce nullif lower upper trim position substring",
].join(" ");
const TYPES = "smallint integer bigint real double precision char varchar binary varbinary timestamp point circle polygon region boolean";
const GEOMETRY = [
  "area", "box", "centroid", "circle", "contains", "coord1", "coord2", "coordsys", "distance", "intersects", "point",
  "polygon", "region",
];
const MATH = [
  "abs", "acos", "asin", "atan", "atan2", "ceiling", "cos", "cot", "degrees", "exp", "floor", "log", "log10", "mod",
  "pi", "power", "radians", "rand", "round", "sin", "sqrt", "tan", "truncate", "count", "min", "max", "avg", "sum",
  "in_unit",
];

const dialect = SQLDialect.define({
  keywords: KEYWORDS,
  types: TYPES,
  builtin: [...GEOMETRY, ...MATH].join(" "),
  identifierQuotes: '"',
  caseInsensitiveIdentifiers: true,
});

/** Words after which a value follows (no comma before an inserted column). */
const KEYWORD_BEFORE_VALUE = /\b(SELECT|DISTINCT|ALL|TOP\s+\d+|WHERE|AND|OR|NOT|ON|BY|FROM|JOIN|AS|HAVING|WHEN|THEN|ELSE|IN|LIKE|BETWEEN)$/i;

/** The editor in `parent`; `onRun` is called with the text on Ctrl-Enter. Returns {view, setSchema, getText,
 * setText, insert, insertColumn}. */
export function createEditor(parent, { onRun, initial = "", onCheck } = {}) {
  const language = new Compartment();
  const completions = new Compartment();
  let functionList = [];
  // Not after a dot: `alias.` completes columns (the schema source) and nothing else.
  const afterDot = (context, word) => context.state.sliceDoc((word ? word.from : context.pos) - 1, word ? word.from : context.pos) === ".";
  const notAfterDot = (source) => (context) => (afterDot(context, context.matchBefore(/[A-Za-z_][A-Za-z0-9_]*/)) ? null : source(context));
  const functionSource = (context) => {
    const word = context.matchBefore(/[A-Za-z_][A-Za-z0-9_]*/);
    if (!word && !context.explicit) return null;
    return {
      from: word ? word.from : context.pos,
      options: functionList.map((f) => ({
        label: f.name.toUpperCase(), type: "function", detail: f.signature.replace(/^[^(]*/, ""),
        info: f.description, apply: `${f.name.toUpperCase()}(`,
      })),
      validFor: /^[A-Za-z0-9_]*$/,
    };
  };
  const check = linter(async (view) => {
    const text = view.state.doc.toString();
    if (!text.trim()) { onCheck?.(null); return []; }
    let result;
    try { result = await api.check(text); } catch (e) { onCheck?.({ ok: false, message: e.message }); return []; }
    if (view.state.doc.toString() !== text) return [];
    onCheck?.(result);
    if (result.ok) return [];
    const doc = view.state.doc;
    let from = 0, to = doc.length;
    if (result.line && result.line <= doc.lines) {
      const line = doc.line(result.line);
      from = Math.min(line.to, line.from + Math.max(0, (result.col || 1) - 1));
      const rest = doc.sliceString(from, line.to).match(/^[A-Za-z0-9_.']+/);
      to = rest ? from + rest[0].length : Math.min(line.to, from + 1);
      if (to === from) { from = Math.max(line.from, from - 1); to = Math.max(to, from + 1); }
    }
    return [{ from, to, severity: "error", message: result.message }];
  }, { delay: 350 });
  const run = () => { onRun?.(view.state.doc.toString()); return true; };
  let used = false;
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: initial,
      extensions: [
        basicSetup,
        Prec.highest(keymap.of([{ key: "Mod-Enter", run }, { key: "Shift-Enter", run }])),
        language.of(sql({ dialect, upperCaseKeywords: true })),
        completions.of(autocompletion()),
        lintGutter(),
        check,
        placeholder("SELECT TOP 10 * FROM ... (Ctrl-Enter runs)"),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": "ADQL query" }),
        // Once the user has put the cursor somewhere, inserted names go there.
        EditorView.updateListener.of((u) => { if (u.focusChanged && u.view.hasFocus) used = true; }),
      ],
    }),
  });
  const setSchema = (tables, functions) => {
    functionList = functions || [];
    // lang-sql completes `schema.table` and, after `alias.`, the columns of the table the alias names.
    const schema = {};
    for (const t of tables) schema[t.name] = t.columns.map((c) => ({ label: c.name, type: "property", detail: [c.datatype, c.unit].filter(Boolean).join(" "), info: c.description || undefined }));
    const config = { dialect, upperCaseKeywords: true, schema };
    view.dispatch({
      effects: [
        language.reconfigure(sql(config)),
        completions.reconfigure(autocompletion({
          override: [schemaCompletionSource(config), notAfterDot(keywordCompletionSource(dialect, true)), notAfterDot(functionSource)],
        })),
      ],
    });
  };
  return {
    view,
    setSchema,
    getText: () => view.state.doc.toString(),
    setText: (text) => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }),
    insert: (text) => {
      const { from, to } = view.state.selection.main;
      view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length } });
      view.focus();
    },
    /** Inserts a column into the select list: at the cursor once the editor has been used, else at the end of the
     * select list (before the first FROM); after a comma when it follows another name or value. */
    insertColumn: (name) => {
      const text = view.state.doc.toString();
      let { from, to } = view.state.selection.main;
      if (!used) {
        const m = /\s*\bFROM\b/i.exec(text);
        from = to = m ? m.index : text.length;
      }
      const lead = text.slice(0, from);
      const trimmed = lead.replace(/\s+$/, "");
      // After a name or value of the list: a comma, right after it; after SELECT (or DISTINCT, TOP n): a space.
      const afterValue = /[\w")*]$/.test(trimmed) && !KEYWORD_BEFORE_VALUE.test(trimmed);
      if (afterValue && from === to) from = to = trimmed.length;
      const insert = (afterValue ? ", " : /\S$/.test(lead) ? " " : "") + name;
      view.dispatch({ changes: { from, to, insert }, selection: { anchor: from + insert.length } });
      view.focus();
    },
  };
}
