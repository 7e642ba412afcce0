/**
 * Preloaded into an app process (`node --import`) by the clock fault: shifts the process's wall
 * clock (`Date.now()`, `new Date()`, `Date()`) by the offset in milliseconds that the file named by
 * FAULTS_CLOCK_OFFSET_FILE holds, read again every 100 ms, as `date -s` would step the machine's
 * clock under a running process (faketime is not installed here). The monotonic clocks
 * (`performance.now()`, `process.hrtime`, timers) are left alone, as a wall-clock step leaves them.
 */
import { readFileSync } from 'node:fs'

const file = process.env.FAULTS_CLOCK_OFFSET_FILE
const RealDate = Date
const realNow = Date.now.bind(Date)
let offset = 0

function readOffset(): void {
  if (!file) return
  try {
    const value = Number(readFileSync(file, 'utf8').trim())
    offset = Number.isFinite(value) ? value : 0
  } catch {
    offset = 0
  }
}
readOffset()
setInterval(readOffset, 100).unref()

const now = () => realNow() + offset

globalThis.Date = new Proxy(RealDate, {
  construct(target, args, newTarget) {
    return Reflect.construct(target, args.length === 0 ? [now()] : args, newTarget)
  },
  apply() {
    return new RealDate(now()).toString()
  },
  get(target, property, receiver) {
    if (property === 'now') return now
    return Reflect.get(target, property, receiver)
  },
})
