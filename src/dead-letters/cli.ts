import { hostname, userInfo } from 'node:os'
import { parseArgs } from 'node:util'
import { argumentProblem, localServerUrl, TOKEN_VARIABLE } from '../platform/cli.ts'
import { ConfigError, loadConfig } from '../platform/config.ts'
import type { DeadLetterAction, DeadLetterDetail, DeadLetterSummary } from './application/console.ts'
import { OPERATOR_HEADER } from './http/routes.ts'

/**
 * `npm run orderflow -- dlq list|show|redrive|discard|actions`: the dead-letter console from a
 * terminal. It asks the running server (its API under /api/dead-letters), which owns the transport
 * a redrive goes out on, so it works the same on the embedded default and on Kafka. A bulk redrive
 * shows its progress; Ctrl-C stops it cleanly (what was sent stays sent, the rest stays open, and
 * the action is recorded as stopped).
 */
export const USAGE = `Usage: npm run orderflow -- dlq <command> [options]

Commands:
  list                 open dead letters, newest first
      [--topic T] [--group G] [--reason R] [--key K] [--state open|redriven|discarded|all]
      [--limit N] [--all]  (--all follows every page)
  show <id>            one dead letter: error, stack, headers, payload and what is parked behind it
  redrive <id>...      send them back to the consumer that failed them (--to topic: to every group)
  redrive --reason R [--topic T] [--group G] [--key K] [--dry-run] [--rate N]
                       every open dead letter that matches, oldest first, at most N per second
                       (default 50), with progress; Ctrl-C stops
  discard <id> --comment "why"
                       close it without redriving (parked messages of its key follow)
  actions [--limit N]  who did what to dead letters, and when

Options:
  --url URL            the server (default: this configuration's HOST and PORT)
  --token T            an operator's bearer token when authentication is on (default ${TOKEN_VARIABLE};
                       AUTH=dev prints one at start-up as OPERATOR_TOKEN)
  --json               JSON instead of tables
  -h, --help           this text

Exit status: 0 done, 1 the server refused (the message says why), 2 bad arguments or no answer.
`

class Refused extends Error {}

interface Client {
  request<T>(method: string, path: string, body?: unknown): Promise<T>
  stream(
    path: string,
    body: unknown,
    onLine: (line: Record<string, unknown>) => void,
    signal: AbortSignal,
  ): Promise<void>
}

function client(base: string, token: string | undefined): Client {
  const headers = (json: boolean): Record<string, string> => ({
    ...(json ? { 'content-type': 'application/json' } : {}),
    ...(token ? { authorization: `Bearer ${token}` } : {}),
    // Who is acting, for the action log when authentication is off (with it on, the token says).
    [OPERATOR_HEADER]: `${userInfo().username}@${hostname()}`,
  })
  const send = async (
    method: string,
    path: string,
    body: unknown,
    extra: Record<string, string>,
    signal?: AbortSignal,
  ) => {
    let response: Response
    try {
      response = await fetch(new URL(path, base), {
        method,
        headers: { ...headers(body !== undefined), ...extra },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      })
    } catch (error) {
      if ((error as Error).name === 'AbortError') throw error
      const cause = (error as { cause?: { message?: string } }).cause?.message ?? (error as Error).message
      throw new Error(`${base} did not answer: ${cause} (is the server running? --url says where)`)
    }
    if (response.status === 401 || response.status === 403) {
      const detail = ((await response.json().catch(() => ({}))) as { detail?: string }).detail ?? ''
      throw new Error(
        `${base} answered ${response.status}${detail ? ` (${detail})` : ''}: ${token ? 'the token is not an operator token that verifies' : `pass an operator token with --token or ${TOKEN_VARIABLE}`}`,
      )
    }
    if (!response.ok) {
      const problem = (await response.json().catch(() => ({}))) as {
        detail?: string
        errors?: { field: string; message: string }[]
      }
      const fields = (problem.errors ?? []).map((e) => `${e.field}: ${e.message}`).join('; ')
      throw new Refused(`${response.status}: ${problem.detail ?? response.statusText}${fields ? ` (${fields})` : ''}`)
    }
    return response
  }
  return {
    async request<T>(method: string, path: string, body?: unknown) {
      return (await (await send(method, path, body, {})).json()) as T
    },
    async stream(path, body, onLine, signal) {
      const response = await send('POST', path, body, { accept: 'application/x-ndjson' }, signal)
      const reader = (response.body as ReadableStream<Uint8Array>).getReader()
      const decoder = new TextDecoder()
      let buffered = ''
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        buffered += decoder.decode(value, { stream: true })
        let newline = buffered.indexOf('\n')
        while (newline >= 0) {
          const line = buffered.slice(0, newline).trim()
          buffered = buffered.slice(newline + 1)
          if (line) onLine(JSON.parse(line) as Record<string, unknown>)
          newline = buffered.indexOf('\n')
        }
      }
    },
  }
}

const pad = (text: string, width: number) => (text.length > width ? `${text.slice(0, width - 1)}…` : text.padEnd(width))

function table(items: readonly DeadLetterSummary[]): string {
  if (items.length === 0) return 'no dead letters match\n'
  const lines = [
    `${pad('ID', 8)} ${pad('STATE', 10)} ${pad('TOPIC', 22)} ${pad('GROUP', 26)} ${pad('KEY', 38)} ${pad('REASON', 18)} ${pad('PARKED', 7)} FAILED AT`,
  ]
  for (const d of items) {
    lines.push(
      `${pad(d.id, 8)} ${pad(d.state, 10)} ${pad(d.topic, 22)} ${pad(d.group, 26)} ${pad(d.key, 38)} ${pad(d.reason, 18)} ${pad(String(d.parkedMessages), 7)} ${d.failedAt}`,
    )
  }
  return `${lines.join('\n')}\n`
}

function describe(d: DeadLetterDetail): string {
  const payload = (() => {
    try {
      return JSON.stringify(JSON.parse(d.payload), null, 2)
    } catch {
      return d.payload
    }
  })()
  return [
    `dead letter ${d.id}: ${d.state}${d.resolvedBy ? ` by ${d.resolvedBy} at ${d.resolvedAt}` : ''}`,
    `  from       ${d.topic} (partition key ${d.key}), consumer group ${d.group}`,
    `  event id   ${d.eventId ?? '-'}`,
    `  reason     ${d.reason} after ${d.attempts} attempt(s), at ${d.failedAt}`,
    `  error      ${d.error.code ? `${d.error.code}: ` : ''}${d.error.message}`,
    `  kept on    ${d.dlq.topic}${d.dlq.partition !== null ? ` partition ${d.dlq.partition} offset ${d.dlq.offset}` : ''}`,
    `  parked     ${d.parkedMessages} message(s) of its key wait behind it`,
    ...d.parked.map(
      (p) => `             ${p.topic}/${p.partition}@${p.offset} ${p.eventId ?? ''} parked ${p.parkedAt}`,
    ),
    '  headers',
    ...Object.entries(d.headers).map(([k, v]) => `    ${k}: ${v}`),
    `  payload (${d.payloadBytes} bytes${d.payloadTruncated ? ', cut: only its start was kept' : ''})`,
    ...payload.split('\n').map((l) => `    ${l}`),
    ...(d.error.stack ? ['  stack', ...d.error.stack.split('\n').map((l) => `    ${l}`)] : []),
    '',
  ].join('\n')
}

const describeAction = (a: DeadLetterAction) =>
  `${a.at} ${a.actor} ${a.action}${a.target ? ` to ${a.target}` : ''}${a.dryRun ? ' (dry run)' : ''}: ${a.done} of ${a.matched} ${a.status}${a.comment ? ` (${a.comment})` : ''} ${JSON.stringify(a.selection)}`

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>
  const parse = (args: string[]) =>
    parseArgs({
      args,
      allowPositionals: true,
      options: {
        topic: { type: 'string' },
        group: { type: 'string' },
        reason: { type: 'string' },
        key: { type: 'string' },
        state: { type: 'string' },
        limit: { type: 'string' },
        all: { type: 'boolean' },
        to: { type: 'string' },
        'dry-run': { type: 'boolean' },
        rate: { type: 'string' },
        comment: { type: 'string' },
        url: { type: 'string' },
        token: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    })
  try {
    parsed = parse(argv)
  } catch (error) {
    const problem = argumentProblem(error)
    if (!problem) throw error
    process.stderr.write(`dlq: ${problem}\n\n${USAGE}`)
    return 2
  }
  const { values, positionals } = parsed
  const [command, ...ids] = positionals
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(USAGE)
    return values.help || command === 'help' ? 0 : 2
  }
  const wrong = (message: string) => {
    process.stderr.write(`dlq: ${message}\n`)
    return 2
  }
  for (const id of ids) if (!/^\d+$/.test(id)) return wrong(`'${id}' is not a dead letter id (digits, as 'list' shows)`)
  const limit = values.limit === undefined ? 50 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) return wrong('--limit must be a whole number from 1 to 500')
  const to = values.to ?? 'consumer'
  if (to !== 'consumer' && to !== 'topic') return wrong(`--to must be consumer or topic (got '${to}')`)
  const base = values.url ?? localServerUrl(loadConfig())
  try {
    new URL(base)
  } catch {
    return wrong(`--url must be an http(s) URL such as http://127.0.0.1:3000 (got '${base}')`)
  }
  const api = client(base, values.token || process.env[TOKEN_VARIABLE] || undefined)
  const filter = Object.fromEntries(
    (['topic', 'group', 'reason', 'key'] as const).flatMap((k) => (values[k] === undefined ? [] : [[k, values[k]]])),
  ) as Record<string, string>
  const out = (text: string) => process.stdout.write(text)

  switch (command) {
    case 'list': {
      let cursor: string | null = null
      const all: DeadLetterSummary[] = []
      do {
        const query = new URLSearchParams({
          ...filter,
          limit: String(limit),
          ...(values.state ? { state: values.state } : {}),
        })
        if (cursor) query.set('cursor', cursor)
        const page: { items: DeadLetterSummary[]; nextCursor: string | null } = await api.request(
          'GET',
          `/api/dead-letters?${query}`,
        )
        all.push(...page.items)
        cursor = values.all ? page.nextCursor : null
        if (!values.all && page.nextCursor) {
          process.stderr.write(`(more: --all for every page)\n`)
        }
      } while (cursor)
      out(values.json ? `${JSON.stringify(all, null, 2)}\n` : table(all))
      return 0
    }
    case 'show': {
      if (ids.length !== 1) return wrong('show takes one dead letter id')
      const d = await api.request<DeadLetterDetail>('GET', `/api/dead-letters/${ids[0]}`)
      out(values.json ? `${JSON.stringify(d, null, 2)}\n` : describe(d))
      return 0
    }
    case 'discard': {
      if (ids.length === 0) return wrong('discard takes the id(s) of the dead letters to discard')
      if (!values.comment?.trim()) return wrong('discard needs --comment "why" (it is kept in the action log)')
      for (const id of ids) {
        const { action } = await api.request<{ action: DeadLetterAction }>('POST', `/api/dead-letters/${id}/discard`, {
          comment: values.comment,
        })
        out(values.json ? `${JSON.stringify(action)}\n` : `discarded ${id} (action ${action.id})\n`)
      }
      return 0
    }
    case 'actions': {
      const { items } = await api.request<{ items: DeadLetterAction[] }>(
        'GET',
        `/api/dead-letters/actions?limit=${limit}`,
      )
      out(values.json ? `${JSON.stringify(items, null, 2)}\n` : `${items.map(describeAction).join('\n')}\n`)
      return 0
    }
    case 'redrive': {
      if (ids.length === 1 && Object.keys(filter).length === 0 && !values['dry-run']) {
        const { action } = await api.request<{ action: DeadLetterAction }>(
          'POST',
          `/api/dead-letters/${ids[0]}/redrive`,
          {
            to,
          },
        )
        out(values.json ? `${JSON.stringify(action)}\n` : `redrove ${ids[0]} to the ${to} (action ${action.id})\n`)
        return 0
      }
      if (ids.length === 0 && Object.keys(filter).length === 0) {
        return wrong('redrive needs ids, or a selection such as --reason RETRIES_EXHAUSTED')
      }
      const rate = values.rate === undefined ? 50 : Number(values.rate)
      if (!(rate > 0 && rate <= 10_000))
        return wrong('--rate must be a number of dead letters per second, above 0 and at most 10000')
      const stop = new AbortController()
      const onSigint = () => {
        process.stderr.write('\nstopping: what was sent stays sent, the rest stays open\n')
        stop.abort()
      }
      process.once('SIGINT', onSigint)
      let last: DeadLetterAction | undefined
      let failure: string | undefined
      let progress = { matched: 0, done: 0 }
      const bar = () => {
        if (!process.stderr.isTTY) return
        const width = 30
        const filled = progress.matched === 0 ? width : Math.round((progress.done / progress.matched) * width)
        process.stderr.write(
          `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${progress.done}/${progress.matched}`,
        )
      }
      try {
        await api.stream(
          '/api/dead-letters/redrive',
          {
            ...filter,
            ...(ids.length > 0 ? { ids } : {}),
            to,
            dryRun: values['dry-run'] === true,
            ratePerSecond: rate,
          },
          (line) => {
            if ('action' in line) last = line.action as DeadLetterAction
            else if ('error' in line) failure = (line.error as { message: string }).message
            else {
              progress = line as unknown as typeof progress
              if (!process.stderr.isTTY) process.stderr.write(`${progress.done}/${progress.matched}\n`)
              bar()
            }
          },
          stop.signal,
        )
      } catch (error) {
        if ((error as Error).name !== 'AbortError') throw error
      } finally {
        process.removeListener('SIGINT', onSigint)
        if (process.stderr.isTTY) process.stderr.write('\n')
      }
      if (failure) throw new Refused(`the redrive failed after ${progress.done} of ${progress.matched}: ${failure}`)
      if (stop.signal.aborted) {
        out(`stopped after ${progress.done} of ${progress.matched}; 'npm run orderflow -- dlq actions' shows it\n`)
        return 1
      }
      if (values.json) out(`${JSON.stringify(last)}\n`)
      else if (last?.dryRun) out(`dry run: ${last.matched} open dead letter(s) match; nothing sent\n`)
      else
        out(
          `redrove ${last?.done ?? progress.done} of ${last?.matched ?? progress.matched} to the ${to} (action ${last?.id})\n`,
        )
      return 0
    }
    default:
      return wrong(`unknown command '${command}'\n\n${USAGE}`)
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    if (error instanceof ConfigError) {
      process.stderr.write(`dlq: cannot start. ${error.message}\n`)
      process.exit(2)
    }
    if (error instanceof Refused) {
      process.stderr.write(`dlq: ${error.message}\n`)
      process.exit(1)
    }
    process.stderr.write(`dlq: ${error instanceof Error ? error.message : error}\n`)
    process.exit(2)
  },
)
