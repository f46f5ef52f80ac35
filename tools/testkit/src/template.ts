import { readFile } from "node:fs/promises";

/**
 * Fills ${NAME} placeholders in a config template. Every placeholder must be
 * given and every value used, so a renamed placeholder fails loudly.
 */
export async function renderTemplate(path: string, values: Record<string, string | number>): Promise<string> {
  const template = await readFile(path, "utf8");
  const used = new Set<string>();
  const rendered = template.replace(/\$\{([A-Z0-9_]+)\}/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new Error(`${path}: no value for placeholder \${${name}}`);
    used.add(name);
    return String(value);
  });
  const unused = Object.keys(values).filter((name) => !used.has(name));
  if (unused.length > 0) throw new Error(`${path}: template has no placeholder for ${unused.join(", ")}`);
  return rendered;
}
