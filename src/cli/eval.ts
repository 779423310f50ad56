/**
 * `npm run eval -- --company FILE --template FILE [--template FILE…] --golden FILE [--json]`
 *
 * Runs a golden set through the company's router (capture, detect, Tier 1, Tier 2 with the local
 * embedder; no LLM) and prints the report. Exit code 0 whatever the accuracy (it is a report);
 * 1 for a configuration problem (unreadable file, invalid JSON, a field that fails validation —
 * each named with its file); 2 for a usage error.
 */
import { readFile } from 'node:fs/promises';
import type { CompanyConfig, TemplateConfig } from '../config/companyConfig.ts';
import { parseCompany, parseTemplate } from '../config/companyConfig.ts';
import { ConfigError } from '../errors.ts';
import { createCompanyRouter } from '../routing/companyRouter.ts';
import { evaluateGolden, formatGoldenReport, parseGolden } from '../routing/evaluateGolden.ts';
import { createLocalEmbedder } from '../routing/localEmbedder.ts';
import { parseCli, runCli, usageError, userPath } from './args.ts';

const USAGE =
  'usage: npm run eval -- --company FILE --template FILE [--template FILE...] --golden FILE [--json]';

/** Reads a file as UTF-8; a failure becomes a ConfigError naming it as `shown`. */
async function readText(path: string, shown = path): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError([
      `${shown}: cannot read file (${err instanceof Error ? err.message : String(err)})`,
    ]);
  }
}

/** Reads and JSON-parses a file; problems become ConfigErrors naming the file. */
async function readJson(path: string): Promise<unknown> {
  const text = await readText(path);
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ConfigError([
      `${path}: (root): not valid JSON (${err instanceof Error ? err.message : String(err)})`,
    ]);
  }
}

async function loadConfig(
  companyPath: string,
  templatePaths: readonly string[],
): Promise<[CompanyConfig, TemplateConfig[]]> {
  // Validate everything before reporting, so one run names every broken file.
  const problems: string[] = [];
  const attempt = async <T>(load: () => Promise<T>): Promise<T | null> => {
    try {
      return await load();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return null;
    }
  };
  const company = await attempt(async () => parseCompany(await readJson(companyPath), companyPath));
  const templates = await Promise.all(
    templatePaths.map((p) => attempt(async () => parseTemplate(await readJson(p), p))),
  );
  if (company === null || problems.length > 0) throw new ConfigError(problems);
  return [company, templates.filter((t) => t !== null)];
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    {
      company: { type: 'string' },
      template: { type: 'string', multiple: true },
      golden: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    USAGE,
  );
  if (positionals.length > 0) throw usageError(`unexpected argument ${positionals[0] ?? ''}`, USAGE);
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const templatePaths = (values.template ?? []).map((p) => userPath(p));
  if (values.company === undefined || values.golden === undefined || templatePaths.length === 0) {
    const missing = [
      values.company === undefined ? '--company' : '',
      templatePaths.length === 0 ? '--template' : '',
      values.golden === undefined ? '--golden' : '',
    ];
    throw usageError(`missing ${missing.filter(Boolean).join(', ')}`, USAGE);
  }
  const [company, templates] = await loadConfig(userPath(values.company), templatePaths);
  const goldenText = await readText(userPath(values.golden), values.golden);
  const router = await createCompanyRouter({ company, templates, embedder: createLocalEmbedder() });
  const report = await evaluateGolden(router, parseGolden(goldenText));
  process.stdout.write(values.json ? `${JSON.stringify(report)}\n` : `${formatGoldenReport(report)}\n`);
  return 0;
}

runCli('eval failed', main(process.argv.slice(2)));
