-- Choreography: orders whose journey gave up waiting for a dispatch or a delivery (see
-- order/domain/journey-deadlines.ts). A row counts only while the order is still at the step it
-- names (PARKED_JOURNEYS): a late answer moves the order on and ends the park. The auditor shows
-- the reason beside the stuck order.
CREATE TABLE order_journey_parked (
  order_id text PRIMARY KEY,
  step text NOT NULL,
  reason text NOT NULL,
  parked_at timestamptz NOT NULL DEFAULT now()
);
