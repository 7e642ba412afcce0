import { z } from 'zod'

/**
 * Seed 003's coffee orders: the producer publishes exactly the order's JSON to `coffee_orders`
 * (`KAFKA_TOPIC`), `{"customer_name":"John Doe","coffee_type":"Latte"}`, and the consumer reads
 * it back. No envelope: this is the seed's wire format, which other producers and consumers of
 * that topic already speak.
 */

export const COFFEE_ORDERS_TOPIC = 'coffee_orders'

export const coffeeOrder = z.object({
  customer_name: z
    .string({ error: 'customer_name must be a string, such as "John Doe"' })
    .trim()
    .min(1, 'customer_name must not be empty')
    .max(200, 'customer_name must be at most 200 characters'),
  coffee_type: z
    .string({ error: 'coffee_type must be a string, such as "Latte"' })
    .trim()
    .min(1, 'coffee_type must not be empty')
    .max(100, 'coffee_type must be at most 100 characters'),
})

export type CoffeeOrder = z.output<typeof coffeeOrder>

/** A message of `coffee_orders`, or why it is not a coffee order. */
export function decodeCoffeeOrder(
  raw: string,
): { ok: true; value: CoffeeOrder } | { ok: false; reason: string; message: string } {
  let json: unknown
  try {
    json = JSON.parse(raw)
  } catch (error) {
    return { ok: false, reason: 'NOT_JSON', message: `message is not JSON: ${(error as Error).message}` }
  }
  const parsed = coffeeOrder.safeParse(json)
  if (!parsed.success) {
    return { ok: false, reason: 'INVALID_ORDER', message: parsed.error.issues.map((i) => i.message).join('; ') }
  }
  return { ok: true, value: parsed.data }
}
