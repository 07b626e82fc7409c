// The third-party code the portal uses, re-exported from one module (bundled by build.sh).
export { EditorView, basicSetup } from "codemirror";
export { EditorState, Prec, Compartment } from "@codemirror/state";
export { keymap, placeholder } from "@codemirror/view";
export { sql, SQLDialect, StandardSQL, keywordCompletionSource, schemaCompletionSource } from "@codemirror/lang-sql";
export { autocompletion, completeFromList, ifNotIn } from "@codemirror/autocomplete";
export { linter, lintGutter, forceLinting, setDiagnostics } from "@codemirror/lint";
export { syntaxTree } from "@codemirror/language";
