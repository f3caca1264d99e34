-- A deleted account stays as an anonymous row ("Deleted user", no email, no password) so that the
-- messages it sent keep an author in the chats of the people it wrote to; see docs/PROTOCOL.md.
ALTER TABLE users ADD COLUMN deleted_at INTEGER;
