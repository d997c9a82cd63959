// ESLint (9, flat config) for the HTML trace view's script:
//   npx --yes eslint@9 --max-warnings 0 asyncfork/_tracing/view/trace.js
// No imports: `npx` fetches ESLint alone, so the recommended rules are listed here
// instead of loaded from @eslint/js, and the browser globals the script uses are named.

const recommended = [
  "constructor-super", "for-direction", "getter-return", "no-async-promise-executor",
  "no-case-declarations", "no-class-assign", "no-compare-neg-zero", "no-cond-assign",
  "no-const-assign", "no-constant-binary-expression", "no-constant-condition",
  "no-control-regex", "no-debugger", "no-delete-var", "no-dupe-args", "no-dupe-class-members",
  "no-dupe-else-if", "no-dupe-keys", "no-duplicate-case", "no-empty",
  "no-empty-character-class", "no-empty-pattern", "no-empty-static-block", "no-ex-assign",
  "no-extra-boolean-cast", "no-fallthrough", "no-func-assign", "no-global-assign",
  "no-import-assign", "no-invalid-regexp", "no-irregular-whitespace", "no-loss-of-precision",
  "no-misleading-character-class", "no-new-native-nonconstructor",
  "no-nonoctal-decimal-escape", "no-obj-calls", "no-octal", "no-prototype-builtins",
  "no-redeclare", "no-regex-spaces", "no-self-assign", "no-setter-return",
  "no-shadow-restricted-names", "no-sparse-arrays", "no-this-before-super", "no-undef",
  "no-unexpected-multiline", "no-unreachable", "no-unsafe-finally", "no-unsafe-negation",
  "no-unsafe-optional-chaining", "no-unused-labels", "no-unused-private-class-members",
  "no-unused-vars", "no-useless-backreference", "no-useless-catch", "no-useless-escape",
  "no-with", "require-yield", "use-isnan", "valid-typeof",
];

export default [
  { ignores: [".venv*/**", "build/**", "dist/**"] },
  {
    files: ["asyncfork/_tracing/view/**/*.js"],
    languageOptions: {
      ecmaVersion: 2020,
      // A classic inline <script>: an IIFE in strict mode, not a module.
      sourceType: "script",
      globals: { window: "readonly", document: "readonly", HTMLInputElement: "readonly" },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...Object.fromEntries(recommended.map((rule) => [rule, "error"])),
      "eqeqeq": "error",
      "no-var": "error",
      "prefer-const": "error",
      "no-implicit-globals": "error",
      "no-shadow": "error",
      "strict": ["error", "function"],
    },
  },
];
