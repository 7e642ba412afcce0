/**
 * The shipping-cost rule, in one place for every service that shows or charges it: the dispatch
 * service puts it on `OrderDispatched`, and seed 002's `GET /order-details` shows it beside the order.
 * Services never import each other, so the rule lives with the contracts.
 *
 * The rule: shipping costs 2 % of the order's total amount, rounded half up to the cent.
 * Seed 002's example fits it: totalAmount 150.00 → shippingCost 3.00. A flat fee or weight bands
 * would need data the orders do not carry; a percentage needs only the total.
 *
 * Amounts are integer minor units (see money.ts), and the arithmetic stays in integers: 2 % is one
 * fiftieth, so cost = ⌊(total + 25) / 50⌋, computed without floating point.
 */

/** The share of the order's total that shipping costs, in percent. */
export const SHIPPING_RATE_PERCENT = 2

/** The rule in words, for API descriptions and READMEs. */
export const SHIPPING_COST_RULE = `${SHIPPING_RATE_PERCENT}% of the order's total amount, rounded half up to the cent`

const DIVISOR = 100 / SHIPPING_RATE_PERCENT

/** The shipping cost of an order, in minor units, from its total amount in minor units. */
export function shippingCostFor(totalAmount: number): number {
  if (!Number.isSafeInteger(totalAmount) || totalAmount < 0) {
    throw new RangeError(`totalAmount must be a whole, non-negative number of minor units, got ${totalAmount}`)
  }
  const halfUp = totalAmount + Math.floor(DIVISOR / 2)
  return (halfUp - (halfUp % DIVISOR)) / DIVISOR
}
