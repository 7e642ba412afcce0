// The overview, orders (with one order's journey) and topics views. Each view renders into the
// page's <main> and stops its timers and streams when `signal` aborts (the route changed).
import { api, badge, esc, fmt, orderLink, problemNotice, stream, table } from './api.js'
import uPlot from './uplot.js'

const PALETTE = ['#3a5ccc', '#1f9d55', '#d97706', '#c53030', '#6b46c1', '#0891b2', '#be185d', '#4d7c0f', '#64748b']

const clockLabels = (_u, ticks) => ticks.map((t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour12: false }))

/** A uPlot time chart that follows its container's width; `update(series)` redraws it. */
function timeChart(container, { yLabel }) {
  let plot
  let names = []
  const width = () => Math.max(320, container.clientWidth - 4)
  const resize = new ResizeObserver(() => plot?.setSize({ width: width(), height: 220 }))
  resize.observe(container)
  return {
    update(times, series) {
      const keys = Object.keys(series)
      const data = [times, ...keys.map((k) => series[k])]
      if (!plot || keys.join('|') !== names.join('|')) {
        plot?.destroy()
        names = keys
        plot = new uPlot(
          {
            width: width(),
            height: 220,
            legend: { live: false },
            cursor: { drag: { x: false, y: false } },
            scales: { y: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] } },
            // Whole seconds at the least: the points are a second apart.
            axes: [
              { incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600], values: clockLabels, space: 60 },
              { label: yLabel, size: 56 },
            ],
            series: [
              {},
              ...keys.map((k, i) => ({
                label: k,
                stroke: PALETTE[i % PALETTE.length],
                width: 2,
                points: { show: false },
              })),
            ],
          },
          data,
          container,
        )
      } else {
        plot.setData(data)
      }
    },
    destroy() {
      resize.disconnect()
      plot?.destroy()
    },
  }
}

const parkedStatus = (r) => `${badge(r.status)}${r.parked ? ' <span class="badge bad">parked</span>' : ''}`

const stat = (id, label) =>
  `<div class="card stat" id="${id}"><div class="label">${esc(label)}</div><div class="value">–</div><div class="sub">&nbsp;</div></div>`

function setStat(root, id, value, sub = '', tone = '') {
  const card = root.querySelector(`#${id}`)
  if (!card) return
  card.className = `card stat ${tone}`
  card.querySelector('.value').textContent = value
  card.querySelector('.sub').innerHTML = sub || '&nbsp;'
}

// ---------------------------------------------------------------- overview

export function overviewView(root, { signal, setLive }) {
  root.innerHTML = `
    <div class="page-head"><div><h1>Overview</h1><div class="muted" id="ov-at">Connecting…</div></div></div>
    <div id="ov-problem"></div>
    <div class="grid cards">
      ${stat('st-orders', 'Orders / s')}${stat('st-events', 'Events / s')}${stat('st-lag', 'Consumer lag')}
      ${stat('st-dead', 'Open dead letters')}${stat('st-parked', 'Parked keys')}${stat('st-outbox', 'Outbox backlog')}
      ${stat('st-stuck', 'Stuck orders')}${stat('st-total', 'Orders')}
    </div>
    <div class="grid two">
      <div class="card"><h2>Throughput <small>orders and events per second</small></h2><div class="chart" id="ch-rates"></div></div>
      <div class="card"><h2>Published per topic <small>messages per second</small></h2><div class="chart" id="ch-topics"></div></div>
    </div>
    <div class="grid two">
      <div class="card"><h2>Consumer lag <small>messages per group</small></h2><div class="chart" id="ch-lag"></div></div>
      <div class="card"><h2>Latest orders <small><a href="#/orders">all orders</a></small></h2><div id="tb-recent"></div></div>
    </div>
    <div class="grid three">
      <div class="card"><h2>Orders by status</h2><div id="tb-status"></div></div>
      <div class="card"><h2>Sagas by step</h2><div id="tb-sagas"></div></div>
      <div class="card"><h2>Outbox</h2><div id="tb-outbox"></div></div>
    </div>
    <div class="grid two">
      <div class="card"><h2>Dead letters <small><a href="#/dead-letters">console</a></small></h2><div id="tb-dead"></div></div>
      <div class="card"><h2>Parked keys <small>messages waiting behind a dead letter</small></h2><div id="tb-parked"></div></div>
    </div>
    <div class="grid two">
      <div class="card"><h2>Stuck orders <small id="stuck-note"></small></h2><div id="tb-stuck"></div></div>
      <div class="card"><h2>Lag per partition <small><a href="#/topics">topics</a></small></h2><div id="tb-lag"></div></div>
    </div>`
  const rates = timeChart(root.querySelector('#ch-rates'), { yLabel: 'per s' })
  const topics = timeChart(root.querySelector('#ch-topics'), { yLabel: 'msg/s' })
  const lag = timeChart(root.querySelector('#ch-lag'), { yLabel: 'messages' })
  const points = []
  const lagPoints = []
  signal.addEventListener('abort', () => {
    rates.destroy()
    topics.destroy()
    lag.destroy()
  })

  const render = (o) => {
    for (const p of o.rates.history ?? []) if (!points.length || p.t > points.at(-1).t) points.push(p)
    const latest = o.rates.latest
    if (latest && (!points.length || latest.t > points.at(-1).t)) points.push(latest)
    if (points.length > 300) points.splice(0, points.length - 300)
    lagPoints.push({
      t: Date.parse(o.at) / 1000,
      groups: Object.fromEntries(o.lag.groups.map((g) => [g.group, g.lag])),
    })
    if (lagPoints.length > 300) lagPoints.splice(0, lagPoints.length - 300)

    root.querySelector('#ov-at').textContent =
      `${o.transport === 'kafka' ? 'Kafka' : 'Embedded log'} · updated ${fmt.time(o.at)} · live, every second`
    root.querySelector('#ov-problem').innerHTML = o.lag.error
      ? `<div class="notice">Consumer lag could not be read: ${esc(o.lag.error)}</div>`
      : ''
    setStat(root, 'st-orders', fmt.rate(latest?.orders ?? 0), 'created, all processes')
    setStat(root, 'st-events', fmt.rate(latest?.events ?? 0), 'appended to the event store')
    setStat(root, 'st-lag', fmt.int(o.lag.total), `${o.lag.groups.length} groups`, o.lag.total > 0 ? 'warn' : 'ok')
    setStat(root, 'st-dead', fmt.int(o.deadLetters.open), 'open', o.deadLetters.open > 0 ? 'bad' : 'ok')
    setStat(
      root,
      'st-parked',
      fmt.int(o.deadLetters.parkedKeys),
      `${fmt.int(o.deadLetters.parked.reduce((s, p) => s + p.messages, 0))} message(s) waiting`,
      o.deadLetters.parkedKeys > 0 ? 'warn' : 'ok',
    )
    setStat(
      root,
      'st-outbox',
      fmt.int(o.outbox.backlog),
      o.outbox.oldestAgeMs === null ? 'drained' : `oldest ${fmt.duration(o.outbox.oldestAgeMs)}`,
      (o.outbox.oldestAgeMs ?? 0) > 10_000 ? 'bad' : '',
    )
    setStat(
      root,
      'st-stuck',
      fmt.int(o.stuck.total),
      `older than ${fmt.duration(o.stuck.stuckAfterMs)}`,
      o.stuck.total > 0 ? 'bad' : 'ok',
    )
    setStat(root, 'st-total', fmt.int(o.orders.total), `${fmt.int(o.sagas.parked)} sagas parked`)

    const times = points.map((p) => p.t)
    rates.update(times, { 'orders/s': points.map((p) => p.orders), 'events/s': points.map((p) => p.events) })
    const topicNames = [...new Set(points.flatMap((p) => Object.keys(p.published)))].sort()
    topics.update(
      times,
      Object.fromEntries(topicNames.map((name) => [name, points.map((p) => p.published[name] ?? 0)])),
    )
    const groupNames = [...new Set(lagPoints.flatMap((p) => Object.keys(p.groups)))].sort()
    lag.update(
      lagPoints.map((p) => p.t),
      Object.fromEntries(groupNames.map((g) => [g, lagPoints.map((p) => p.groups[g] ?? null)])),
    )

    root.querySelector('#tb-recent').innerHTML = table(
      [
        { label: 'Order', render: (r) => orderLink(r.id) },
        { label: 'Status', render: parkedStatus },
        {
          label: 'Saga step',
          render: (r) =>
            r.sagaStep ? `${esc(r.sagaStep)} ${r.sagaStatus === 'COMPLETED' ? '' : badge(r.sagaStatus)}` : '–',
        },
        { label: 'Created', render: (r) => fmt.time(r.createdAt) },
      ],
      o.recent,
      'No orders yet: POST /api/orders',
    )
    const max = Math.max(1, ...o.orders.byStatus.map((s) => s.count))
    root.querySelector('#tb-status').innerHTML = table(
      [
        { label: 'Status', render: (r) => badge(r.status) },
        { label: '', render: (r) => `<div class="bar"><span style="width:${(100 * r.count) / max}%"></span></div>` },
        { label: 'Orders', num: true, render: (r) => fmt.int(r.count) },
      ],
      o.orders.byStatus,
      'No orders yet',
    )
    root.querySelector('#tb-sagas').innerHTML =
      table(
        [
          { label: 'Saga', render: (r) => badge(r.status) },
          { label: 'Step', render: (r) => esc(r.step ?? '–') },
          { label: 'Sagas', num: true, render: (r) => fmt.int(r.count) },
        ],
        o.sagas.bySteps,
        'No sagas (choreography, or no orders yet)',
      ) +
      (o.sagas.keysParked > 0
        ? `<p class="error">${fmt.int(o.sagas.keysParked)} saga(s) wait behind a parked key</p>`
        : '')
    root.querySelector('#tb-outbox').innerHTML = `<dl class="facts">
      <dt>Waiting to be published</dt><dd>${fmt.int(o.outbox.backlog)}</dd>
      <dt>Oldest waiting for</dt><dd>${o.outbox.oldestAgeMs === null ? '–' : fmt.duration(o.outbox.oldestAgeMs)}</dd>
      <dt>Published / s</dt><dd>${fmt.rate(Object.values(latest?.published ?? {}).reduce((a, b) => a + b, 0))}</dd>
      <dt>Dead-lettered / s</dt><dd>${fmt.rate(latest?.deadLettered ?? 0)}</dd></dl>`
    root.querySelector('#tb-dead').innerHTML = table(
      [
        {
          label: 'Topic',
          render: (r) => `<a href="#/dead-letters?topic=${encodeURIComponent(r.topic)}">${esc(r.topic)}</a>`,
        },
        { label: 'Group', render: (r) => esc(r.group) },
        {
          label: 'Reason',
          render: (r) => `<a href="#/dead-letters?reason=${encodeURIComponent(r.reason)}">${badge(r.reason)}</a>`,
        },
        { label: 'Open', num: true, render: (r) => fmt.int(r.count) },
      ],
      o.deadLetters.byReason,
      'No open dead letters',
    )
    root.querySelector('#tb-parked').innerHTML = table(
      [
        { label: 'Topic', render: (r) => esc(r.topic) },
        { label: 'Group', render: (r) => esc(r.group) },
        { label: 'Keys', num: true, render: (r) => fmt.int(r.keys) },
        { label: 'Messages', num: true, render: (r) => fmt.int(r.messages) },
      ],
      o.deadLetters.parked,
      'No key is parked',
    )
    root.querySelector('#stuck-note').textContent = o.stuck.checkedAt
      ? `audited ${fmt.time(o.stuck.checkedAt)}, every 10 s`
      : (o.stuck.error ?? '')
    root.querySelector('#tb-stuck').innerHTML = table(
      [
        { label: 'Order', render: (r) => orderLink(r.orderId) },
        { label: 'Status', render: (r) => badge(r.status) },
        { label: 'Waits at', render: (r) => esc(r.step) },
        { label: 'Age', num: true, render: (r) => fmt.duration(r.ageMs) },
        { label: 'Parked', render: (r) => esc(r.parkedReason ?? '') },
      ],
      o.stuck.orders,
      'No stuck orders',
    )
    root.querySelector('#tb-lag').innerHTML = table(
      [
        { label: 'Group', render: (r) => esc(r.group) },
        { label: 'Topic', render: (r) => esc(r.topic) },
        { label: 'Partition', num: true, render: (r) => r.partition },
        { label: 'Committed', num: true, render: (r) => fmt.int(r.committed) },
        { label: 'End', num: true, render: (r) => fmt.int(r.endOffset) },
        { label: 'Lag', num: true, render: (r) => (r.lag > 0 ? `<b>${fmt.int(r.lag)}</b>` : '0') },
      ],
      [...o.lag.partitions].sort((a, b) => b.lag - a.lag).slice(0, 15),
      'No consumer group has committed yet',
    )
  }

  stream('/api/dashboard/stream', {
    signal,
    onState: setLive,
    onEvent: (name, data) => {
      if (name === 'overview') render(data)
      else if (name === 'problem') root.querySelector('#ov-problem').innerHTML = problemNotice(data)
    },
  })
}

// ---------------------------------------------------------------- orders and one order's journey

export async function ordersView(root, { signal }) {
  root.innerHTML = `
    <div class="page-head"><div><h1>Orders</h1><div class="muted">Open any order to see its journey</div></div></div>
    <div class="card" style="margin-bottom:16px">
      <form class="toolbar" id="journey-form">
        <input name="id" placeholder="order-0194…" size="48" class="mono" aria-label="Order id" />
        <button class="primary" type="submit">Show the journey</button>
      </form>
    </div>
    <div class="grid two">
      <div class="card"><h2>Latest orders</h2><div id="tb-recent">Loading…</div></div>
      <div class="card"><h2>Stuck orders</h2><div id="tb-stuck">Loading…</div></div>
    </div>`
  root.querySelector('#journey-form').addEventListener('submit', (event) => {
    event.preventDefault()
    const id = new FormData(event.target).get('id').trim()
    if (id) location.hash = `#/orders/${encodeURIComponent(id)}`
  })
  const load = async () => {
    try {
      const o = await api('/api/dashboard/overview')
      root.querySelector('#tb-recent').innerHTML = table(
        [
          { label: 'Order', render: (r) => orderLink(r.id) },
          { label: 'Status', render: parkedStatus },
          { label: 'Saga step', render: (r) => esc(r.sagaStep ?? '–') },
          { label: 'Created', render: (r) => fmt.dateTime(r.createdAt) },
          { label: 'Updated', render: (r) => fmt.time(r.updatedAt) },
        ],
        o.recent,
        'No orders yet',
      )
      root.querySelector('#tb-stuck').innerHTML = table(
        [
          { label: 'Order', render: (r) => orderLink(r.orderId) },
          { label: 'Status', render: (r) => badge(r.status) },
          { label: 'Waits at', render: (r) => esc(r.step) },
          { label: 'Age', num: true, render: (r) => fmt.duration(r.ageMs) },
        ],
        o.stuck.orders,
        'No stuck orders',
      )
    } catch (error) {
      root.querySelector('#tb-recent').innerHTML = problemNotice(error)
      root.querySelector('#tb-stuck').innerHTML = ''
    }
  }
  await load()
  const timer = setInterval(load, 2000)
  signal.addEventListener('abort', () => clearInterval(timer))
}

const MILESTONES = [
  ['Created', 'OrderCreated'],
  ['Paid', 'PaymentProcessed'],
  ['Confirmed', 'OrderConfirmed'],
  ['Dispatched', 'OrderDispatched'],
  ['Delivered', 'OrderDelivered'],
]

function milestones(journey) {
  const seen = new Set(journey.events.map((e) => e.type))
  const cancelled = journey.order?.status === 'CANCELLED'
  const reached = MILESTONES.map(([, type]) => seen.has(type))
  const last = reached.lastIndexOf(true)
  const steps = MILESTONES.map(([label], i) => {
    const tone = reached[i] ? 'done' : i === last + 1 && !cancelled ? 'current' : ''
    return `<div class="step ${tone}">${label}</div>`
  })
  if (cancelled) steps.push(`<div class="step failed">Cancelled</div>`)
  return `<div class="steps">${steps.join('')}</div>`
}

const KIND_LABEL = {
  event: 'event',
  published: 'published',
  handled: 'handled',
  saga: 'saga',
  retry: 'retry',
  'dead-letter': 'dead letter',
  parked: 'parked',
  resolved: 'resolved',
}

function timelineList(entries) {
  if (entries.length === 0) return '<div class="empty">Nothing yet</div>'
  return `<ol class="timeline">${entries
    .map((e) => {
      const where = [
        e.topic ? esc(e.topic) : '',
        e.partition !== undefined ? `p${e.partition}` : '',
        e.offset !== undefined ? `@${esc(e.offset)}` : '',
      ]
        .filter(Boolean)
        .join(' ')
      const meta = [where, e.group ? `by ${esc(e.group)}` : '', e.detail ? esc(e.detail) : '']
        .filter(Boolean)
        .join(' · ')
      return `<li data-kind="${esc(e.kind)}"><span class="when">${fmt.timeMs(e.at)}</span>
        <span><span class="badge kind-${esc(e.kind)}">${KIND_LABEL[e.kind] ?? esc(e.kind)}</span></span>
        <span class="what"><b>${esc(e.title)}</b><span class="meta">${meta}</span></span></li>`
    })
    .join('')}</ol>`
}

export async function journeyView(root, { signal, id }) {
  root.innerHTML = `<div class="muted">Loading the journey of <code>${esc(id)}</code>…</div>`
  let mode = 'full'
  let journey
  const draw = () => {
    const j = journey
    const order = j.order
    const entries =
      mode === 'full' ? j.timeline : j.timeline.filter((e) => e.kind !== 'handled' && e.kind !== 'published')
    const terminal = order && (order.status === 'DELIVERED' || order.status === 'CANCELLED')
    root.innerHTML = `
      <div class="page-head">
        <div><h1 class="mono">${esc(j.orderId)}</h1>
          <div class="muted">${order ? `${badge(order.status)} · customer ${esc(order.customerId)} · ${order.totalAmount ?? '–'} ${esc(order.currency ?? '')} · created ${fmt.dateTime(order.createdAt)}` : 'no order row (the order module does not run here)'}
          ${terminal ? '' : ' · <span class="badge info">live</span>'}</div>
        </div>
        <div class="tabs"><button data-mode="full" class="${mode === 'full' ? 'active' : ''}">Full</button><button data-mode="compact" class="${mode === 'compact' ? 'active' : ''}">Compact</button></div>
      </div>
      ${milestones(j)}
      ${j.parked.length > 0 ? `<div class="notice bad">Its key is parked in ${j.parked.map((p) => `<b>${esc(p.group)}</b> (${p.messages.length} message(s) waiting behind <a href="#/dead-letters/${encodeURIComponent(p.deadLetterId)}">dead letter ${esc(p.deadLetterId)}</a>)`).join(', ')}</div>` : ''}
      <div class="grid two" style="grid-template-columns: 2fr 1fr">
        <div class="card"><h2>Timeline <small>${entries.length} entries, in the order they happened</small></h2>${timelineList(entries)}</div>
        <div>
          <div class="card" style="margin-bottom:16px"><h2>Trace and requests</h2>
            <dl class="facts">
              <dt>Trace id</dt><dd class="mono" id="trace-ids">${j.traceIds.map(esc).join('<br>') || '–'}</dd>
              ${j.requests.map((r) => `<dt>Request</dt><dd><span class="mono">${esc(r.correlationId ?? '–')}</span><br><span class="muted">${fmt.timeMs(r.at)} · ${r.events.map(esc).join(', ')}</span></dd>`).join('')}
            </dl>
          </div>
          <div class="card" style="margin-bottom:16px"><h2>Saga ${j.saga ? badge(j.saga.status) : ''}</h2>${sagaPanel(j.saga, j.timers)}</div>
          <div class="card"><h2>Dead letters</h2>${table(
            [
              { label: 'Id', render: (d) => `<a href="#/dead-letters/${encodeURIComponent(d.id)}">${esc(d.id)}</a>` },
              { label: 'Group', render: (d) => esc(d.group) },
              { label: 'Reason', render: (d) => badge(d.reason) },
              { label: 'State', render: (d) => badge(d.state) },
            ],
            j.deadLetters,
            'None',
          )}</div>
        </div>
      </div>
      <div class="card" style="margin-bottom:16px"><h2>Messages <small>outbox → topic → consumer groups</small></h2>${table(
        [
          { label: 'Message', render: (m) => `<b>${esc(m.type ?? '')}</b>` },
          { label: 'Topic', render: (m) => esc(m.topic) },
          {
            label: 'Partition / offset',
            render: (m) => (m.partition === null ? '–' : `p${m.partition} @${esc(m.offset)}`),
          },
          { label: 'Written', render: (m) => fmt.timeMs(m.createdAt) },
          {
            label: 'Published',
            render: (m) =>
              m.onTopicAt
                ? `${fmt.timeMs(m.onTopicAt)} <span class="muted">+${Date.parse(m.onTopicAt) - Date.parse(m.createdAt)} ms</span>`
                : `<span class="badge warn">waiting</span>${m.lastError ? ` <span class="error">${esc(m.lastError)}</span>` : ''}`,
          },
          {
            label: 'Handled by',
            render: (m) =>
              m.handledBy.map((h) => `${esc(h.group)} <span class="muted">${fmt.timeMs(h.at)}</span>`).join('<br>') ||
              '–',
          },
        ],
        j.messages,
        'No messages',
      )}</div>
      <div class="card"><h2>Events <small>the event store, every stream of the order</small></h2>${table(
        [
          { label: '#', num: true, render: (e) => esc(e.position) },
          { label: 'Stream', render: (e) => `<span class="mono">${esc(e.streamId)}</span> v${e.version}` },
          { label: 'Event', render: (e) => `<b>${esc(e.type)}</b>` },
          { label: 'Recorded', render: (e) => fmt.timeMs(e.recordedAt) },
          {
            label: 'Data',
            render: (e) =>
              `<details><summary>show</summary><pre>${esc(JSON.stringify({ data: e.data, metadata: e.metadata }, null, 2))}</pre></details>`,
          },
        ],
        j.events,
        'No events',
      )}</div>`
    for (const button of root.querySelectorAll('[data-mode]')) {
      button.addEventListener('click', () => {
        mode = button.dataset.mode
        draw()
      })
    }
  }
  let timer
  const load = async () => {
    try {
      const next = await api(`/api/dashboard/orders/${encodeURIComponent(id)}/journey`)
      if (signal.aborted) return
      const changed = JSON.stringify(next) !== JSON.stringify(journey)
      journey = next
      if (changed) draw()
      const terminal = next.order && (next.order.status === 'DELIVERED' || next.order.status === 'CANCELLED')
      // Keeps following while the order moves; a finished one is looked at less often.
      timer = setTimeout(load, terminal && next.parked.length === 0 ? 5000 : 1000)
    } catch (error) {
      if (signal.aborted) return
      root.innerHTML =
        error.status === 404
          ? `<div class="notice">Nothing is known about <code>${esc(id)}</code>. Check the id (orders look like <code>order-0194…</code>).</div>`
          : problemNotice(error)
      if (error.status === 404) timer = setTimeout(load, 2000)
    }
  }
  signal.addEventListener('abort', () => clearTimeout(timer))
  await load()
}

function sagaPanel(saga, timers) {
  if (!saga)
    return '<div class="empty">No saga for this order (choreography, or the saga module does not run here)</div>'
  const history = saga.history
    .map(
      (h) =>
        `<tr><td class="mono">${fmt.timeMs(h.at)}</td><td>${h.direction === 'in' ? '←' : '→'} ${esc(h.type)}</td><td class="muted">${esc(h.step ?? h.topic ?? '')} ${esc(h.detail ?? '')}</td></tr>`,
    )
    .join('')
  return `<dl class="facts">
      <dt>Step</dt><dd>${esc(saga.step ?? '–')} (attempt ${saga.attempt})</dd>
      <dt>Outcome</dt><dd>${esc(saga.outcome ?? '–')}</dd>
      ${saga.parkedReason ? `<dt>Parked</dt><dd class="error">${esc(saga.parkedReason)}</dd>` : ''}
      <dt>Next deadline</dt><dd>${fmt.dateTime(saga.nextDeadline)}</dd>
      <dt>Timers</dt><dd>${timers.map((t) => `${esc(t.kind)} ${t.armed ? `due ${fmt.time(t.dueAt)}` : 'not armed yet'}`).join('<br>') || '–'}</dd>
    </dl>
    <details style="margin-top:8px"><summary>History (${saga.history.length})</summary><table>${history}</table></details>`
}

// ---------------------------------------------------------------- topics and consumer groups

export async function topicsView(root, { signal }) {
  root.innerHTML = `<div class="page-head"><div><h1>Topics and consumer groups</h1><div class="muted" id="tp-at">Loading…</div></div></div>
    <div class="card" style="margin-bottom:16px"><h2>Topics</h2><div id="tb-topics"></div></div>
    <div class="card"><h2>Consumer groups</h2><div id="tb-groups"></div></div>`
  const load = async () => {
    try {
      const view = await api('/api/dashboard/topics')
      if (signal.aborted) return
      root.querySelector('#tp-at').textContent =
        `${view.transport === 'kafka' ? 'Kafka brokers (read every 5 s)' : 'Embedded log'} · ${fmt.time(view.at)}`
      root.querySelector('#tb-topics').innerHTML = table(
        [
          { label: 'Topic', render: (t) => `<b>${esc(t.name)}</b>` },
          { label: 'Partitions', num: true, render: (t) => t.partitions.length },
          {
            label: 'End offsets',
            render: (t) =>
              `<span class="mono">${t.partitions.map((p) => `${p.partition}:${p.endOffset}`).join(' ')}</span>`,
          },
          { label: 'Messages', num: true, render: (t) => fmt.int(t.messages) },
          {
            label: 'Lag',
            num: true,
            render: (t) => (t.lag > 0 ? `<span class="badge warn">${fmt.int(t.lag)}</span>` : '0'),
          },
          {
            label: 'Dead letters',
            num: true,
            render: (t) =>
              t.openDeadLetters > 0 || t.deadLetterRecords > 0
                ? `<a href="#/dead-letters?topic=${encodeURIComponent(t.name)}"><span class="badge ${t.openDeadLetters > 0 ? 'bad' : ''}">${fmt.int(t.openDeadLetters)} open</span></a> <span class="muted">${fmt.int(t.deadLetterRecords)} on ${esc(t.deadLetterTopic ?? '-dlq')}</span>`
                : '0',
          },
          { label: 'Parked keys', num: true, render: (t) => fmt.int(t.parkedKeys) },
          { label: 'Read by', render: (t) => t.groups.map(esc).join('<br>') || '–' },
        ],
        view.topics,
        'No topics yet',
      )
      root.querySelector('#tb-groups').innerHTML = table(
        [
          { label: 'Group', render: (g) => `<b>${esc(g.group)}</b>${g.state ? ` ${badge(g.state)}` : ''}` },
          {
            label: 'Lag',
            num: true,
            render: (g) => (g.lag > 0 ? `<span class="badge warn">${fmt.int(g.lag)}</span>` : '0'),
          },
          {
            label: 'Partitions (topic / partition: committed / end)',
            render: (g) =>
              `<span class="mono">${g.partitions.map((p) => `${esc(p.topic)}/${p.partition}: ${p.committed}/${p.endOffset}${p.lag > 0 ? ` (lag ${p.lag})` : ''}`).join('<br>')}</span>`,
          },
          {
            label: 'Members',
            render: (g) =>
              g.members === null
                ? '<span class="muted">in this process (embedded log)</span>'
                : g.members
                    .map(
                      (m) =>
                        `${esc(m.clientId)} <span class="muted">${esc(m.host)}</span> ${m.assignments.map((a) => `${esc(a.topic)}[${a.partitions.join(',')}]`).join(' ')}`,
                    )
                    .join('<br>') || '<span class="muted">none</span>',
          },
        ],
        view.groups,
        'No consumer group has committed yet',
      )
    } catch (error) {
      root.querySelector('#tb-topics').innerHTML = problemNotice(error)
    }
  }
  await load()
  const timer = setInterval(load, 3000)
  signal.addEventListener('abort', () => clearInterval(timer))
}
