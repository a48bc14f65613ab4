-- Rejected messages can be sent back to the queue after a fix; remember when and as which message.
ALTER TABLE rejected_messages
  ADD COLUMN resubmitted_at timestamptz,
  ADD COLUMN resubmitted_message_id varchar(128);
CREATE INDEX rejected_messages_pending_idx ON rejected_messages (id) WHERE resubmitted_at IS NULL;
