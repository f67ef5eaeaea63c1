-- Accepted requests are leased to the process running them, so that when several processes
-- share a store, the work of one that died is taken over once its lease ends.
ALTER TABLE inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE inbox ADD COLUMN claimed_until INTEGER;
