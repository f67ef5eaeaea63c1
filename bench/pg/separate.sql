-- One message as the PostgreSQL store wrote it statement by statement: the request accepted
-- (inbox, transaction, log) in one transaction, its answer queued (request done, backend
-- calls, outbox, log) in a second, and the answer marked delivered. Compare with one.sql.
\set n random(1, 9000000000000000000)
\set now 1796000000000
\set later :now + 60000
\set deadline :now + 30000
BEGIN;
INSERT INTO inbox (flow, action, message_id, transaction_id, body, callback_base, state, received_at, claimed_by, claimed_until, digest) VALUES ('lab', 'search', 'm' || :n, 't' || :n, convert_to(repeat('s', 1000), 'UTF8'), 'http://127.0.0.1:9/bap', 'accepted', :now, 'p1', :later, md5('m' || :n)) ON CONFLICT DO NOTHING;
INSERT INTO transactions (flow, transaction_id, role, counterpart, created_at, updated_at) VALUES ('lab', 't' || :n, 'bpp', 'bap.example', :now, :now) ON CONFLICT (flow, transaction_id) DO UPDATE SET updated_at = excluded.updated_at WHERE transactions.counterpart IS NULL OR transactions.counterpart = excluded.counterpart;
INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, body, created_at) VALUES ('lab', 'in', 'search', 't' || :n, 'm' || :n, '{}', convert_to(repeat('s', 1000), 'UTF8'), :now);
COMMIT;
BEGIN;
UPDATE inbox SET state = 'done', done_at = :now WHERE flow = 'lab' AND action = 'search' AND message_id = 'm' || :n AND state = 'accepted' AND claimed_by = 'p1' AND claim_epoch = 0;
INSERT INTO action_steps (flow, transaction_id, action, message_id, steps, created_at) VALUES ('lab', 't' || :n, 'search', 'm' || :n, '[{"step":"catalog"},{"step":"prices"}]', :now);
INSERT INTO outbox (flow, kind, url, action, transaction_id, message_id, body, state, attempts, next_attempt_at, deadline, created_at, sequence_key, claimed_by, claimed_until, last_error, finished_at) VALUES ('lab', 'callback', 'http://127.0.0.1:9/bap/on_search', 'on_search', 't' || :n, 'o' || :n, convert_to(repeat('c', 12000), 'UTF8'), 'pending', 0, :now, :deadline, :now, NULL, 'p1', :later, NULL, NULL) RETURNING id \gset
INSERT INTO messages (flow, direction, action, transaction_id, message_id, headers, body, created_at) VALUES ('lab', 'out', 'on_search', 't' || :n, 'o' || :n, '{}', convert_to(repeat('c', 12000), 'UTF8'), :now);
COMMIT;
UPDATE outbox SET state = 'delivered', attempts = attempts + 1, finished_at = :now, claimed_by = NULL, claimed_until = NULL, last_error = NULL WHERE id = :id AND state = 'pending' AND claimed_by = 'p1' AND claim_epoch = 0;
