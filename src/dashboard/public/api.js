// The dashboard's access to the API: the operator's bearer token (kept in this tab's
// sessionStorage, never in the URL once read), JSON requests, and the overview's stream of
// server-sent events read with fetch, so that the token goes in a header (EventSource sends none).

const TOKEN_KEY = 'orderflow.dashboard.token'

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
}

/** A `#token=…` in the address (AUTH=dev's link) signs in, and leaves the address at once. */
export function takeTokenFromAddress() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (!match) return false
  token.set(decodeURIComponent(match[1]))
  history.replaceState(null, '', `${location.pathname}#/overview`)
  return true
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`)
    this.status = status
    this.problem = problem
  }
}

const listeners = new Set()
/** Called with 401 and 403 answers, so the page can ask for a token. */
export function onAuthProblem(listener) {
  listeners.add(listener)
}

function headers(extra = {}) {
  const value = token.get()
  return value ? { ...extra, authorization: `Bearer ${value}` } : extra
}

export async function api(path, options = {}) {
  const init = { method: options.method ?? 'GET', headers: headers() }
  if (options.body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(options.body)
  }
  const response = await fetch(path, init)
  const text = await response.text()
  const body = text ? JSON.parse(text) : null
  if (!response.ok) {
    if (response.status === 401 || response.status === 403) for (const l of listeners) l(response.status, body)
    throw new ApiError(response.status, body)
  }
  return body
}

/**
 * Reads `path` as server-sent events until `signal` aborts, calling `onEvent(name, data)` for each
 * one; reconnects after a pause when the stream ends or fails, and reports its state to `onState`.
 */
export async function stream(path, { signal, onEvent, onState }) {
  while (!signal.aborted) {
    try {
      const response = await fetch(path, { headers: headers({ accept: 'text/event-stream' }), signal })
      if (!response.ok) {
        if (response.status === 401 || response.status === 403) {
          for (const l of listeners) l(response.status, null)
          onState?.('off')
          return
        }
        throw new Error(`HTTP ${response.status}`)
      }
      onState?.('on')
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer += value
        let end = buffer.indexOf('\n\n')
        while (end >= 0) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let name = 'message'
          const data = []
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim()
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart())
          }
          if (data.length > 0) onEvent(name, JSON.parse(data.join('\n')))
          end = buffer.indexOf('\n\n')
        }
      }
    } catch (error) {
      if (signal.aborted) return
      console.warn('dashboard stream:', error)
    }
    onState?.('off')
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
}

// Small helpers for the views.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }
export const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c])

export const fmt = {
  int: (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US')),
  rate: (n) =>
    n === null || n === undefined ? '–' : Number(n) >= 100 ? Math.round(n).toString() : Number(n).toFixed(1),
  time: (iso) => (iso ? new Date(iso).toLocaleTimeString('en-GB', { hour12: false }) : '–'),
  timeMs: (iso) => {
    if (!iso) return '–'
    const d = new Date(iso)
    return `${d.toLocaleTimeString('en-GB', { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`
  },
  dateTime: (iso) => (iso ? new Date(iso).toLocaleString('en-GB', { hour12: false }) : '–'),
  duration: (ms) => {
    if (ms === null || ms === undefined) return '–'
    if (ms < 1000) return `${Math.round(ms)} ms`
    if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
    if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
    return `${(ms / 3_600_000).toFixed(1)} h`
  },
}

const STATUS_TONE = {
  DELIVERED: 'ok',
  COMPLETED: 'ok',
  CAPTURED: 'ok',
  redriven: 'ok',
  completed: 'ok',
  CANCELLED: 'bad',
  FAILED: 'bad',
  PARKED: 'bad',
  open: 'bad',
  failed: 'bad',
  PENDING: 'info',
  CONFIRMED: 'info',
  DISPATCHED: 'info',
  RUNNING: 'info',
  running: 'info',
  COMPENSATING: 'warn',
  discarded: 'warn',
  stopped: 'warn',
  Stable: 'ok',
  Empty: 'warn',
  PreparingRebalance: 'warn',
  CompletingRebalance: 'warn',
  Dead: 'bad',
}
export const badge = (status) => `<span class="badge ${STATUS_TONE[status] ?? ''}">${esc(status ?? '–')}</span>`

export const orderLink = (id) => `<a class="mono" href="#/orders/${encodeURIComponent(id)}">${esc(id)}</a>`

export function table(columns, rows, empty = 'Nothing to show') {
  if (rows.length === 0) return `<div class="empty">${esc(empty)}</div>`
  const head = columns.map((c) => `<th class="${c.num ? 'num' : ''}">${esc(c.label)}</th>`).join('')
  const body = rows
    .map((row) => `<tr>${columns.map((c) => `<td class="${c.num ? 'num' : ''}">${c.render(row)}</td>`).join('')}</tr>`)
    .join('')
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`
}

export function problemNotice(error) {
  if (error?.status === 401) {
    return `<div class="notice bad">Sign in with an operator token to see this (the <b>Sign in</b> button, top right).</div>`
  }
  if (error?.status === 403) {
    return `<div class="notice bad">This token does not have the operator role.</div>`
  }
  return `<div class="notice bad">${esc(error?.message ?? String(error))}</div>`
}
