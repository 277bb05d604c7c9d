/**
 * Local development configuration shared by `npm run dev` and `npm run cordon`: the `.dev.vars` file
 * (created from `.dev.vars.example` with generated secrets) and where the dev tenant's key is kept.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";

export const DEV_VARS = ".dev.vars";
export const DEV_KEY_FILE = ".wrangler/cordon-dev-key.json";

/** Reads `.dev.vars`, first creating it from the example, or adding names the example has and it lacks. */
export function loadDevVars() {
  const example = parseVars(readFileSync(".dev.vars.example", "utf8"));
  const current = existsSync(DEV_VARS) ? readFileSync(DEV_VARS, "utf8") : "";
  const vars = parseVars(current);
  const missing = Object.keys(example).filter((name) => !(name in vars));
  if (missing.length > 0) {
    const added = missing.map((name) => {
      vars[name] = example[name] === "generate" ? randomBytes(24).toString("hex") : example[name];
      return `${name}=${vars[name]}`;
    });
    const separator = current === "" || current.endsWith("\n") ? "" : "\n";
    writeFileSync(DEV_VARS, `${current}${separator}${added.join("\n")}\n`);
    console.log(`[cordon] ${DEV_VARS}: generated ${missing.join(", ")}`);
  }
  return vars;
}

function parseVars(text) {
  const vars = {};
  for (const line of text.split("\n")) {
    const match = /^\s*([A-Z0-9_]+)\s*=\s*(.*?)\s*$/.exec(line);
    if (match) vars[match[1]] = match[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}
