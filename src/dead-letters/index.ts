import type { ServiceModule } from '../platform/module.ts'
import { deadLetterConsole } from './application/console.ts'
import { deadLetterRoutes } from './http/routes.ts'

/**
 * The dead-letter console (see application/console.ts): the API under `/api/dead-letters`, used by
 * the dashboard and by `npm run orderflow -- dlq`. Its tables are the platform's (every reliable
 * consumer indexes its dead letters there), so it runs beside any set of services on their database.
 */
export function deadLettersModule(): ServiceModule {
  return {
    name: 'dead-letters',
    async start(context) {
      const console = deadLetterConsole({ db: context.db, transport: context.transport, clock: context.clock })
      return { routes: deadLetterRoutes(console) }
    },
  }
}
