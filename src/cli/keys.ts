// `inferenceflow keys create | list | revoke`: manages virtual keys through a running gateway's
// admin API (so it works with the embedded PGlite file, which only the gateway process may open),
// authenticated by the admin token (--admin-token or INFERENCEFLOW_ADMIN_TOKEN).
import { Command, InvalidArgumentError, Option } from 'commander';
import { request } from 'undici';
import { positiveInt, positiveNumber } from './args.js';

interface Common {
  url: string;
  adminToken?: string;
  json?: boolean;
}

function list(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

async function call(opts: Common, method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
  // Trimmed, as the gateway trims its own (src/config/schema.ts): a token read from a mounted secret
  // ends in a newline, which no header may carry.
  const token = (opts.adminToken ?? process.env.INFERENCEFLOW_ADMIN_TOKEN)?.trim();
  if (!token) throw new Error('no admin token: pass --admin-token or set INFERENCEFLOW_ADMIN_TOKEN');
  const res = await request(`${opts.url.replace(/\/$/, '')}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.body.text();
  let json: { error?: { message?: string } } = {};
  try {
    if (text) json = JSON.parse(text) as typeof json;
  } catch {
    // Not the gateway's JSON (a proxy's error page, a wrong --url): say what came back instead.
    const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, 200);
    if (res.statusCode >= 400) throw new Error(`${res.statusCode}: ${excerpt}`);
    throw new Error(`${res.statusCode}: the answer from ${opts.url} is not JSON (is it the gateway?): ${excerpt}`);
  }
  if (res.statusCode >= 400) throw new Error(`${res.statusCode}: ${json.error?.message ?? text}`);
  return json;
}

function jsonObject(value: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    throw new InvalidArgumentError('expected a JSON object, e.g. \'{"owner":"ci"}\'');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError('expected a JSON object, e.g. \'{"owner":"ci"}\'');
  return parsed as Record<string, unknown>;
}

type KeyView = { id: string; name: string; prefix: string; user_id: string | null; team_id: string | null; revoked_at: string | null; expires_at: string | null; budget_usd: number | null; rpm: number | null };

function row(k: KeyView): string {
  const state = k.revoked_at ? 'revoked' : k.expires_at && Date.parse(k.expires_at) <= Date.now() ? 'expired' : 'active';
  return [k.id, `${k.prefix}…`, state, k.name || '-', k.user_id ?? '-', k.team_id ?? '-', k.rpm ?? '-', k.budget_usd ?? '-'].join('\t');
}

export function keysCommand(): Command {
  const cmd = new Command('keys').description('manage virtual API keys through the admin API');
  const common = (c: Command) =>
    c
      // INFERENCEFLOW_URL set empty is unset, as every other variable.
      .option('--url <url>', 'gateway base URL', process.env.INFERENCEFLOW_URL || 'http://127.0.0.1:8080')
      .option('--admin-token <token>', 'admin token (or INFERENCEFLOW_ADMIN_TOKEN)')
      .option('--json', 'print JSON');

  common(cmd.command('create').description('create a key; prints it once'))
    .option('--name <name>', 'a label')
    .option('--user <id>', 'user the key belongs to')
    .option('--team <id>', 'team the key belongs to')
    .option('--models <list>', 'comma-separated models the key may use', list)
    .option('--rpm <n>', 'requests per minute', positiveInt)
    .option('--tpm <n>', 'tokens per minute', positiveInt)
    .option('--max-concurrency <n>', 'requests in flight at once', positiveInt)
    .option('--budget <usd>', 'budget in USD', positiveNumber)
    .addOption(new Option('--budget-period <period>', 'period of --budget (default month)').choices(['day', 'month']))
    .option('--ip <list>', 'comma-separated allowed IPs or CIDR blocks', list)
    .option('--expires-in <seconds>', 'lifetime in seconds', positiveInt)
    .option('--metadata <json>', 'JSON object stored with the key', jsonObject)
    .action(async (o: Common & Record<string, unknown>) => {
      // The gateway keeps a period only with a budget: alone it would be dropped without a word.
      if (o.budgetPeriod !== undefined && o.budget === undefined) throw new Error('--budget-period needs --budget (the USD limit per period); pass both, or neither');
      const body = {
        ...(o.name ? { name: o.name } : {}),
        ...(o.user ? { user_id: o.user } : {}),
        ...(o.team ? { team_id: o.team } : {}),
        ...(o.models ? { models: o.models } : {}),
        ...(o.rpm ? { rpm: o.rpm } : {}),
        ...(o.tpm ? { tpm: o.tpm } : {}),
        ...(o.maxConcurrency ? { max_concurrency: o.maxConcurrency } : {}),
        ...(o.budget ? { budget_usd: o.budget, ...(o.budgetPeriod ? { budget_period: o.budgetPeriod } : {}) } : {}),
        ...(o.ip ? { ip_allowlist: o.ip } : {}),
        ...(o.expiresIn ? { expires_in_s: o.expiresIn } : {}),
        ...(o.metadata ? { metadata: o.metadata } : {}),
      };
      const created = (await call(o, 'POST', '/admin/keys', body)) as KeyView & { key: string };
      if (o.json) console.log(JSON.stringify(created, null, 2));
      else console.log(`${created.key}\n\nid ${created.id} — store the key now: it is not shown again.`);
    });

  common(cmd.command('list').description('list keys (never their secrets)')).action(async (o: Common) => {
    const res = (await call(o, 'GET', '/admin/keys')) as { data: KeyView[] };
    if (o.json) console.log(JSON.stringify(res.data, null, 2));
    else {
      console.log(['id', 'prefix', 'state', 'name', 'user', 'team', 'rpm', 'budget_usd'].join('\t'));
      for (const k of res.data) console.log(row(k));
    }
  });

  common(cmd.command('revoke').description('revoke a key at once on every replica').argument('<id>', 'key id (key_…)')).action(async (id: string, o: Common) => {
    const k = (await call(o, 'POST', `/admin/keys/${encodeURIComponent(id)}/revoke`)) as KeyView;
    if (o.json) console.log(JSON.stringify(k, null, 2));
    else console.log(`revoked ${k.id} (${k.prefix}…)`);
  });
  return cmd;
}
