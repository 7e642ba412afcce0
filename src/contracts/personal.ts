import { z } from 'zod'

/**
 * Personal data in the contracts: what a customer's delivery address and contact are, and the form
 * they take in every event, command, state and read model: sealed (encrypted with the customer's
 * data key, see platform/personal-data), never plaintext. Only the service that takes them in
 * (an HTTP request, a cart's checkout) sees them in clear, and a service that needs one (dispatch,
 * to hand the address to its carrier) opens it with the key; an erased customer's read as `ERASED`.
 */

/** The envelope a sealed field travels in (AES-256-GCM; `platform/personal-data/sealed.ts` makes and opens it). */
const base64url = z.string().regex(/^[A-Za-z0-9_-]*$/, 'must be base64url')
export const sealedSchema = z.object({
  $enc: z.literal(1),
  sub: z.string().min(1).max(200),
  kid: z.number().int().positive(),
  eid: z.string().min(1).max(100),
  iv: base64url.length(16),
  ct: base64url.max(20_000),
  tag: base64url.length(22),
})

export type Sealed = z.infer<typeof sealedSchema>

export const isSealed = (value: unknown): value is Sealed => sealedSchema.safeParse(value).success

/** What a personal field of an erased customer reads as, everywhere: HTTP, projections, replays. */
export const ERASED = '[erased]'
export type Erased = typeof ERASED

const text = (name: string, max: number) =>
  z
    .string({ error: `${name} must be a string` })
    .trim()
    .min(1, `${name} must not be empty`)
    .max(max, `${name} must be at most ${max} characters`)

/** Where an order goes. Personal: sealed wherever it is kept or sent. */
export const deliveryAddressSchema = z.strictObject({
  name: text('name', 200),
  street: text('street', 300),
  city: text('city', 100),
  postalCode: text('postalCode', 20),
  country: z
    .string({ error: 'country must be a string' })
    .regex(/^[A-Z]{2}$/, 'country must be an ISO 3166-1 alpha-2 code such as DE or US'),
})

/** How to reach the customer about an order. Personal: sealed wherever it is kept or sent. */
export const contactSchema = z
  .strictObject({
    email: z.email({ error: 'email must be an email address' }).max(320).optional(),
    phone: z
      .string({ error: 'phone must be a string' })
      .regex(/^\+?[0-9 ()-]{5,30}$/, 'phone must be digits, spaces, ( ) or -, optionally after a +')
      .optional(),
  })
  .refine((c) => c.email !== undefined || c.phone !== undefined, {
    message: 'contact needs an email or a phone',
    path: ['email'],
  })

export type DeliveryAddress = z.output<typeof deliveryAddressSchema>
export type Contact = z.output<typeof contactSchema>

/**
 * A personal field as a message or stored event carries it: sealed, or null (or left out) when the
 * customer gave none. A plaintext value is refused at the boundary (INVALID_EVENT / INVALID_COMMAND).
 */
export const sealedField = sealedSchema.nullable().optional()

/** A personal field as the domain handles it: clear on the way in, sealed once recorded. */
export type Personal<T> = T | Sealed | null

/** A personal field opened for a reader: the value, `ERASED` once its customer was erased, or null. */
export type Opened<T> = T | Erased | null

/** The personal fields of order and journey messages, by name: the path in a sealed value's associated data. */
export const PERSONAL_FIELDS = ['deliveryAddress', 'contact'] as const

/**
 * An OrderCreated or CartCheckedOut with its personal fields present (null where the writer left
 * them out, as code written before they existed does): what the wire schema of their version 2 needs.
 */
export function withPersonalFields<Event extends { eventType: string }>(event: Event): Event {
  if (event.eventType !== 'OrderCreated' && event.eventType !== 'CartCheckedOut') return event
  const fields = event as Event & { deliveryAddress?: unknown; contact?: unknown }
  return { ...event, deliveryAddress: fields.deliveryAddress ?? null, contact: fields.contact ?? null }
}
