-- Callbacks a buyer app refused (bad signature, schema, recipient...) that name one of its
-- requests by message id: a JSON array of {bpp_id, received_at, code, reason}, at most a few
-- per request, so the answer document can say that an answer came and why it was refused.
ALTER TABLE bap_requests ADD COLUMN refused TEXT;
