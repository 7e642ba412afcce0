// The dashboard's shell: a hash router over the views, the order search, and signing in with a
// bearer token (pasted, or from AUTH=dev's `#token=` link).
import { api, onAuthProblem, takeTokenFromAddress, token } from './api.js'
import { deadLettersView, deadLetterView } from './dead-letters.js'
import { journeyView, ordersView, overviewView, topicsView } from './views.js'

const view = document.querySelector('#view')
const signIn = document.querySelector('#sign-in')
const live = document.querySelector('#live')
let current

function setLive(state) {
  live.className = `live ${state}`
  live.textContent = state === 'on' ? '● live' : '● offline'
}

function route() {
  current?.abort()
  current = new AbortController()
  const signal = current.signal
  const [path, search = ''] = location.hash.replace(/^#/, '').split('?')
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent)
  const query = new URLSearchParams(search)
  const section = parts[0] ?? 'overview'
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === section)
  }
  setLive(section === 'overview' ? 'off' : '')
  if (section !== 'overview') live.textContent = ''
  window.scrollTo(0, 0)
  const context = { signal, setLive, query }
  switch (section) {
    case 'orders':
      document.title = parts[1] ? `${parts[1]} · orderflow` : 'Orders · orderflow'
      return parts[1] ? journeyView(view, { ...context, id: parts[1] }) : ordersView(view, context)
    case 'topics':
      document.title = 'Topics · orderflow'
      return topicsView(view, context)
    case 'dead-letters':
      document.title = 'Dead letters · orderflow'
      return parts[1] ? deadLetterView(view, { ...context, id: parts[1] }) : deadLettersView(view, context)
    default:
      document.title = 'Overview · orderflow'
      return overviewView(view, context)
  }
}

function showSignIn(reason) {
  signIn.hidden = false
  const error = document.querySelector('#sign-in-error')
  error.hidden = !reason
  error.textContent = reason ?? ''
}

document.querySelector('#sign-in-button').addEventListener('click', () => {
  if (signIn.hidden) showSignIn()
  else signIn.hidden = true
})
document.querySelector('#sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const value = document
    .querySelector('#token-input')
    .value.trim()
    .replace(/^Bearer\s+/i, '')
  if (!value) return
  token.set(value)
  try {
    await api('/api/dashboard/topics')
    signIn.hidden = true
    document.querySelector('#token-input').value = ''
    updateSession()
    route()
  } catch (error) {
    token.clear()
    showSignIn(error.status === 403 ? 'This token does not have the operator role.' : `Not accepted: ${error.message}`)
  }
})
document.querySelector('#sign-out').addEventListener('click', () => {
  token.clear()
  updateSession()
  route()
})
onAuthProblem((status) =>
  showSignIn(
    status === 403
      ? 'This token does not have the operator role.'
      : 'Authentication is on: sign in with an operator token.',
  ),
)

function updateSession() {
  document.querySelector('#sign-in-button').textContent = token.get() ? 'Token ✓' : 'Sign in'
}

document.querySelector('#order-search').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = document.querySelector('#order-search-input')
  const id = input.value.trim()
  if (id) location.hash = `#/orders/${encodeURIComponent(id)}`
  input.value = ''
  input.blur()
})

takeTokenFromAddress()
updateSession()
window.addEventListener('hashchange', route)
route()
