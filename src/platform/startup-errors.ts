import type { Config } from './config.ts'

/**
 * Start-up failures a user causes by configuration, said in one line that names the variable to
 * change, instead of a stack: the port is taken, the database of DATABASE_URL cannot be reached or
 * refuses the login, DATA_DIR belongs to another process. `undefined` for anything else (a bug:
 * the caller prints the stack).
 */
export function explainStartupFailure(error: unknown, config: Config, depth = 0): string | undefined {
  const explained = explainOne(error, config)
  if (explained !== undefined || depth > 3) return explained
  const cause = (error as { cause?: unknown } | undefined)?.cause
  return cause === undefined ? undefined : explainStartupFailure(cause, config, depth + 1)
}

function explainOne(error: unknown, config: Config): string | undefined {
  const e = (error ?? {}) as { code?: string; message?: string; syscall?: string; hostname?: string; cause?: unknown }
  const code = e.code ?? ''
  const message = e.message ?? String(error)

  if (code === 'EADDRINUSE') {
    return `PORT ${config.http.port} is already in use on ${config.http.host}: stop the process listening there, or set PORT to a free port (PORT=0 picks one).`
  }
  if (code === 'EACCES' && e.syscall === 'listen') {
    return `PORT ${config.http.port} on ${config.http.host} needs privileges this process does not have: set PORT to 1024 or above.`
  }
  if (
    code === 'EADDRNOTAVAIL' ||
    (code === 'ENOTFOUND' && e.syscall === 'getaddrinfo' && e.hostname === config.http.host)
  ) {
    return `HOST ${config.http.host} is not an address of this machine: set HOST to one of its addresses (127.0.0.1 by default, 0.0.0.0 for every interface).`
  }
  if (/DATA_DIR .* is in use by process/.test(message)) return message
  // The outbox relay's shard count disagrees with that of the relays running on the database.
  if (code === 'CONFIG_INVALID') return message

  if (config.database.kind === 'postgres') {
    const where = describeDatabaseUrl(config.database.url)
    const prefix = `DATABASE_URL (${where})`
    switch (code) {
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return `${prefix}: the host name does not resolve (${code}). Check the host in DATABASE_URL.`
      case 'ECONNREFUSED':
        return `${prefix}: nothing accepts connections there (ECONNREFUSED). Is PostgreSQL running, and is the port right?`
      case 'ETIMEDOUT':
      case 'EHOSTUNREACH':
        return `${prefix}: no answer from the server (${code}). Check the host, the port and any firewall.`
      case '3D000':
        return `${prefix}: ${message}. Create it (createdb) or name an existing database in DATABASE_URL.`
      case '28P01':
      case '28000':
        return `${prefix}: the server refused the login (${message}). Check the user and password in DATABASE_URL.`
      case '42501':
        return `${prefix}: the user may not create what orderflow needs (${message}). Grant CREATE on the database, or use another user.`
    }
    if (/timeout exceeded when trying to connect|Connection terminated/i.test(message)) {
      return `${prefix}: no answer from the server (${message}). Check the host, the port and any firewall.`
    }
  }
  return undefined
}

/** The URL without its password, for messages. */
export function describeDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url)
    if (parsed.password) parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'not a valid URL'
  }
}
