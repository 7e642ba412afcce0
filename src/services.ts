import { auditModule } from './audit/index.ts'
import { cartModule } from './cart/index.ts'
import { coffeeModule } from './coffee/index.ts'
import { customerModule } from './customer/index.ts'
import { dashboardModule } from './dashboard/index.ts'
import { deadLettersModule } from './dead-letters/index.ts'
import { deliveryModule } from './delivery/index.ts'
import { dispatchModule } from './dispatch/index.ts'
import { orderModule } from './order/index.ts'
import { orderDetailsModule } from './order-details/index.ts'
import { paymentModule } from './payment/index.ts'
import type { ServiceModule } from './platform/module.ts'
import { sagaModule } from './saga/index.ts'
import { shopModule } from './shop/index.ts'

/**
 * Every service module orderflow has, in start order. `SERVICES=order,payment` picks some of them
 * for a process; by default a process runs them all. SAGA_MODE decides who drives the journey:
 * the saga module (orchestration) or the services' own reactions (choreography).
 */
export function allModules(): ServiceModule[] {
  return [
    cartModule(),
    orderModule(),
    paymentModule(),
    dispatchModule(),
    deliveryModule(),
    sagaModule(),
    auditModule(),
    dashboardModule(),
    deadLettersModule(),
    shopModule(),
    orderDetailsModule(),
    coffeeModule(),
    customerModule(),
  ]
}

/** The modules `names` selects, or every module; an unknown name is a configuration error. */
export function selectModules(names: readonly string[] | undefined): ServiceModule[] {
  const modules = allModules()
  if (names === undefined) return modules
  const known = modules.map((m) => m.name)
  const unknown = names.filter((name) => !known.includes(name))
  if (unknown.length > 0) {
    throw new UnknownServiceError(
      `SERVICES names ${unknown.map((n) => `'${n}'`).join(', ')}, which orderflow does not have; choose from ${known.join(', ')} (or 'all')`,
    )
  }
  return modules.filter((m) => names.includes(m.name))
}

export class UnknownServiceError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'UnknownServiceError'
  }
}
