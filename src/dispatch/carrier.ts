import type { DeliveryAddress, Erased } from '../contracts/personal.ts'

/**
 * The carrier port: who takes a dispatched parcel to the customer, and the one place the dispatch
 * service opens a delivery address (with the customer's key, before its transaction). The address
 * goes to the carrier in clear, as a label must; dispatch stores and publishes it sealed only.
 */
export interface CarrierLabel {
  orderId: string
  shipmentId: string
  /** `ERASED` when the customer's personal data was erased meanwhile: the parcel waits at the depot. */
  address: DeliveryAddress | Erased
}

export interface Carrier {
  /** Books the parcel; booking one shipment again changes nothing. */
  book(label: CarrierLabel): Promise<void>
}

/**
 * The simulated carrier of the embedded default and the tests: it keeps the most recent labels in
 * memory only (bounded), so that a test can see what a real carrier would have been handed.
 */
export function simulatedCarrier(
  options: { keep?: number } = {},
): Carrier & { labels: ReadonlyMap<string, CarrierLabel> } {
  const keep = options.keep ?? 1_000
  const labels = new Map<string, CarrierLabel>()
  return {
    labels,
    async book(label) {
      labels.delete(label.shipmentId)
      labels.set(label.shipmentId, label)
      while (labels.size > keep) labels.delete(labels.keys().next().value as string)
    },
  }
}
