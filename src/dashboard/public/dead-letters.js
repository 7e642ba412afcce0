// The dead-letter console: the list with filters, one dead letter with its payload, headers, error
// and parked messages, redrive (to the consumer that failed, or to the original topic), discard
// with a comment, a bulk redrive by reason with a dry run first, and the log of every action.
// It calls the dead-letter API of the same process (/api/dead-letters).
import { api, badge, esc, fmt, orderLink, problemNotice, table } from './api.js'

const FILTERS = ['topic', 'group', 'reason', 'key', 'state']

function unavailable(error) {
  return error?.status === 404 && !error.problem?.details
    ? '<div class="notice">The dead-letter API (<code>/api/dead-letters</code>) does not run in this process.</div>'
    : problemNotice(error)
}

export async function deadLettersView(root, { signal, query }) {
  const filters = Object.fromEntries(FILTERS.map((f) => [f, query.get(f) ?? (f === 'state' ? 'open' : '')]))
  root.innerHTML = `
    <div class="page-head"><div><h1>Dead letters</h1>
      <div class="muted">Messages a consumer gave up on. The records stay on <code>&lt;topic&gt;-dlq</code>; their state is kept here.</div></div></div>
    <div id="dl-flash"></div>
    <div class="card" style="margin-bottom:16px">
      <form class="toolbar" id="dl-filters">
        ${['topic', 'group', 'reason', 'key'].map((f) => `<input name="${f}" placeholder="${f}" value="${esc(filters[f])}" aria-label="${f}" />`).join('')}
        <select name="state" aria-label="state">${['open', 'redriven', 'discarded', 'all'].map((s) => `<option ${s === filters.state ? 'selected' : ''}>${s}</option>`).join('')}</select>
        <button type="submit">Filter</button>
      </form>
      <div id="dl-list">Loading…</div>
      <div class="row"><button id="dl-more" hidden>More</button></div>
    </div>
    <div class="grid two">
      <div class="card"><h2>Bulk redrive <small>by the filters above</small></h2>
        <p class="muted">A dry run first counts what the selection matches; the redrive then sends them back at the rate asked, and the action is logged.</p>
        <div class="toolbar">
          <select id="bulk-to" aria-label="redrive to"><option value="consumer">to the consumer that failed</option><option value="topic">to the original topic</option></select>
          <input id="bulk-rate" type="number" min="1" value="50" style="width:90px" aria-label="rate per second" /> <span class="muted">per second</span>
        </div>
        <div class="row"><button id="bulk-dry">Dry run</button><button id="bulk-run" class="primary" disabled>Redrive</button><span id="bulk-result" class="muted"></span></div>
      </div>
      <div class="card"><h2>Summary <small>open, per topic, group and reason</small></h2><div id="dl-summary">Loading…</div></div>
    </div>
    <div class="card" style="margin-top:16px"><h2>Actions <small>who did what, when, to how many</small></h2><div id="dl-actions">Loading…</div></div>`

  root.querySelector('#dl-filters').addEventListener('submit', (event) => {
    event.preventDefault()
    const form = new FormData(event.target)
    const params = new URLSearchParams()
    for (const f of FILTERS) if (form.get(f)) params.set(f, form.get(f))
    location.hash = `#/dead-letters?${params}`
  })

  const selection = () =>
    Object.fromEntries(['topic', 'group', 'reason', 'key'].filter((f) => filters[f]).map((f) => [f, filters[f]]))
  let cursor = null
  let items = []
  const listColumns = [
    { label: 'Id', render: (d) => `<a href="#/dead-letters/${encodeURIComponent(d.id)}">${esc(d.id)}</a>` },
    { label: 'Failed', render: (d) => fmt.dateTime(d.failedAt) },
    { label: 'Topic', render: (d) => esc(d.topic) },
    { label: 'Group', render: (d) => esc(d.group) },
    {
      label: 'Key',
      render: (d) => (d.key?.startsWith('order-') ? orderLink(d.key) : `<span class="mono">${esc(d.key)}</span>`),
    },
    { label: 'Reason', render: (d) => badge(d.reason) },
    { label: 'Error', render: (d) => `<span class="muted">${esc((d.errorMessage ?? '').slice(0, 120))}</span>` },
    { label: 'Attempts', num: true, render: (d) => d.attempts },
    {
      label: 'Parked',
      num: true,
      render: (d) => (d.parkedMessages > 0 ? `<span class="badge warn">${d.parkedMessages}</span>` : '0'),
    },
    { label: 'State', render: (d) => badge(d.state) },
  ]
  const loadList = async (more = false) => {
    const params = new URLSearchParams({ ...selection(), state: filters.state, limit: '50' })
    if (more && cursor) params.set('cursor', cursor)
    try {
      const page = await api(`/api/dead-letters?${params}`)
      items = more ? [...items, ...page.items] : page.items
      cursor = page.nextCursor
      root.querySelector('#dl-list').innerHTML = table(listColumns, items, 'No dead letter matches')
      root.querySelector('#dl-more').hidden = !cursor
    } catch (error) {
      root.querySelector('#dl-list').innerHTML = unavailable(error)
    }
  }
  root.querySelector('#dl-more').addEventListener('click', () => loadList(true))

  const loadSide = async () => {
    try {
      const summary = await api('/api/dead-letters/summary')
      root.querySelector('#dl-summary').innerHTML =
        table(
          [
            { label: 'Topic', render: (r) => esc(r.topic) },
            { label: 'Group', render: (r) => esc(r.group) },
            {
              label: 'Reason',
              render: (r) => `<a href="#/dead-letters?reason=${encodeURIComponent(r.reason)}">${badge(r.reason)}</a>`,
            },
            { label: 'Open', num: true, render: (r) => fmt.int(r.count) },
          ],
          summary.open,
          'No open dead letters',
        ) +
        (summary.parkedKeys.length > 0
          ? `<h2 style="margin-top:12px">Parked keys</h2>${table(
              [
                { label: 'Group', render: (k) => esc(k.group) },
                { label: 'Key', render: (k) => (k.key?.startsWith('order-') ? orderLink(k.key) : esc(k.key)) },
                { label: 'Waiting', num: true, render: (k) => fmt.int(k.messages) },
                {
                  label: 'Behind',
                  render: (k) =>
                    `<a href="#/dead-letters/${encodeURIComponent(k.deadLetterId)}">${esc(k.deadLetterId)}</a>`,
                },
              ],
              summary.parkedKeys,
            )}`
          : '')
      const actions = await api('/api/dead-letters/actions?limit=50')
      root.querySelector('#dl-actions').innerHTML = actionsTable(actions.items)
    } catch (error) {
      root.querySelector('#dl-summary').innerHTML = unavailable(error)
      root.querySelector('#dl-actions').innerHTML = ''
    }
  }

  const bulk = async (dryRun) => {
    const result = root.querySelector('#bulk-result')
    const body = {
      ...selection(),
      to: root.querySelector('#bulk-to').value,
      dryRun,
      ratePerSecond: Number(root.querySelector('#bulk-rate').value) || undefined,
    }
    try {
      const action = await api('/api/dead-letters/redrive', { method: 'POST', body })
      result.textContent = dryRun
        ? `${action.matched} dead letter(s) match: nothing was sent`
        : `${action.status}: ${action.done} of ${action.matched} redriven`
      root.querySelector('#bulk-run').disabled = !dryRun || action.matched === 0
      await Promise.all([loadList(), loadSide()])
    } catch (error) {
      result.innerHTML = `<span class="error">${esc(error.message)}</span>`
    }
  }
  root.querySelector('#bulk-dry').addEventListener('click', () => bulk(true))
  root.querySelector('#bulk-run').addEventListener('click', () => {
    if (confirm('Redrive every dead letter the filters select?')) bulk(false)
  })

  await Promise.all([loadList(), loadSide()])
  const timer = setInterval(loadSide, 5000)
  signal.addEventListener('abort', () => clearInterval(timer))
}

function actionsTable(actions) {
  return table(
    [
      { label: 'When', render: (a) => fmt.dateTime(a.at) },
      { label: 'Who', render: (a) => esc(a.actor) },
      {
        label: 'Action',
        render: (a) =>
          `<b>${esc(a.action)}</b>${a.target ? ` to ${esc(a.target)}` : ''}${a.dryRun ? ' <span class="badge">dry run</span>' : ''}`,
      },
      { label: 'Selection', render: (a) => `<span class="mono">${esc(JSON.stringify(a.selection))}</span>` },
      { label: 'Done', num: true, render: (a) => `${fmt.int(a.done)} / ${fmt.int(a.matched)}` },
      { label: 'Status', render: (a) => badge(a.status) },
      { label: 'Comment', render: (a) => esc(a.comment ?? '') },
    ],
    actions,
    'No action yet',
  )
}

export async function deadLetterView(root, { signal, id }) {
  let flash = ''
  const draw = (d) => {
    const open = d.state === 'open'
    const payload = (() => {
      try {
        return JSON.stringify(JSON.parse(d.payload), null, 2)
      } catch {
        return d.payload
      }
    })()
    root.innerHTML = `
      <div class="page-head"><div><h1>Dead letter ${esc(d.id)} ${badge(d.state)}</h1>
        <div class="muted">${esc(d.topic)} · group ${esc(d.group)} · key ${d.key?.startsWith('order-') ? orderLink(d.key) : esc(d.key)} · failed ${fmt.dateTime(d.failedAt)} after ${d.attempts} attempt(s)</div></div>
        <a href="#/dead-letters">All dead letters</a></div>
      ${flash}
      <div class="grid two">
        <div class="card"><h2>Error ${badge(d.reason)}</h2>
          <p><b>${esc(d.error?.message ?? d.errorMessage ?? '')}</b>${d.error?.code ? ` <span class="badge">${esc(d.error.code)}</span>` : ''}</p>
          ${d.error?.stack ? `<details><summary>Stack</summary><pre>${esc(d.error.stack)}</pre></details>` : ''}
          <dl class="facts" style="margin-top:12px">
            <dt>Event id</dt><dd class="mono">${esc(d.eventId ?? '–')}</dd>
            <dt>On the DLQ</dt><dd class="mono">${esc(d.dlq?.topic)} p${esc(d.dlq?.partition)} @${esc(d.dlq?.offset)}</dd>
            <dt>Resolved</dt><dd>${d.resolvedAt ? `${fmt.dateTime(d.resolvedAt)} by ${esc(d.resolvedBy)} <span class="mono">${esc(JSON.stringify(d.resolution))}</span>` : '–'}</dd>
          </dl>
        </div>
        <div class="card"><h2>Act</h2>
          ${
            open
              ? `<div class="row"><button class="primary" data-redrive="consumer">Redrive to the consumer</button><button data-redrive="topic">Redrive to the topic</button></div>
                 <p class="muted">To the consumer: the group that failed handles it again (and then the messages parked behind it, in order). To the topic: published again on ${esc(d.topic)} for every group.</p>
                 <div class="row"><input id="discard-comment" placeholder="why it is discarded" style="flex:1" aria-label="discard comment" /><button class="danger" id="discard">Discard</button></div>`
              : '<p class="muted">Resolved: nothing left to do.</p>'
          }
        </div>
      </div>
      <div class="card" style="margin-bottom:16px"><h2>Parked behind it <small>${d.parked.length} message(s), released in this order</small></h2>${table(
        [
          { label: 'Seq', num: true, render: (p) => esc(p.seq) },
          { label: 'Topic', render: (p) => esc(p.topic) },
          { label: 'Partition / offset', render: (p) => `p${p.partition} @${esc(p.offset)}` },
          { label: 'Event id', render: (p) => `<span class="mono">${esc(p.eventId ?? '–')}</span>` },
          { label: 'Parked', render: (p) => fmt.dateTime(p.parkedAt) },
        ],
        d.parked,
        'No message waits behind it',
      )}</div>
      <div class="grid two">
        <div class="card"><h2>Payload <small>${fmt.int(d.payloadBytes)} bytes${d.payloadTruncated ? ', truncated' : ''}</small></h2><pre>${esc(payload)}</pre></div>
        <div class="card"><h2>Headers</h2><pre>${esc(JSON.stringify(d.headers, null, 2))}</pre></div>
      </div>`
    for (const button of root.querySelectorAll('[data-redrive]')) {
      button.addEventListener('click', () =>
        act(`/api/dead-letters/${encodeURIComponent(d.id)}/redrive`, { to: button.dataset.redrive }),
      )
    }
    root.querySelector('#discard')?.addEventListener('click', () => {
      const comment = root.querySelector('#discard-comment').value.trim()
      if (!comment) {
        root.querySelector('#discard-comment').focus()
        return
      }
      act(`/api/dead-letters/${encodeURIComponent(d.id)}/discard`, { comment })
    })
  }
  const act = async (path, body) => {
    for (const button of root.querySelectorAll('button')) button.disabled = true
    try {
      const result = await api(path, { method: 'POST', body })
      flash = `<div class="notice ok">${esc(result.action.action)}: ${result.action.done} of ${result.action.matched} (${esc(result.action.status)})</div>`
      draw(result.deadLetter)
    } catch (error) {
      flash = problemNotice(error)
      await load()
    }
  }
  const load = async () => {
    try {
      const d = await api(`/api/dead-letters/${encodeURIComponent(id)}`)
      if (!signal.aborted) draw(d)
    } catch (error) {
      root.innerHTML = unavailable(error)
    }
  }
  await load()
}
