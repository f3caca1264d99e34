-- Presence privacy. A member's presence and last seen show to the other member of a chat only
-- once the member has reached out there: started the chat (asked for it by the other's email) or
-- written in it. Knowing someone's email is not enough to watch when they are online.
ALTER TABLE chat_members ADD COLUMN reached_out BOOLEAN NOT NULL DEFAULT FALSE;
-- Chats from before the rule keep showing what they showed.
UPDATE chat_members SET reached_out = TRUE;

-- Hidden from everyone; and while hidden, one sees nobody's.
ALTER TABLE users ADD COLUMN hide_presence BOOLEAN NOT NULL DEFAULT FALSE;
