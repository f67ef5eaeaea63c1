-- Claims are fenced: every take-over of an accepted request or an outbox message bumps its
-- epoch, and every outcome is written only by the claim's owner at the epoch it took, so a
-- process that lost its claim (paused past its lease) can change nothing.
ALTER TABLE inbox ADD COLUMN claim_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN claim_epoch INTEGER NOT NULL DEFAULT 0;
