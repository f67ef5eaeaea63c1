-- Who may act on what: a digest of each accepted request, so that a message id used again for
-- a different message is told from a repeat of the same one; and the orders of a flow found by
-- their id, so that an order action is answered only for the buyer app that placed the order.
ALTER TABLE inbox ADD COLUMN digest TEXT;
CREATE INDEX transactions_by_order ON transactions (flow, erp_order_id)
    WHERE erp_order_id IS NOT NULL;
