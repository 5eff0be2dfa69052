-- Migration number: 0002 	 2026-11-21T22:05:00.000Z
CREATE TABLE posts (
  id INTEGER PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  updated_at TEXT
);

CREATE INDEX posts_author_id ON posts(author_id);

-- Keep updated_at current; the body holds a `;`, which d1ctl keeps inside the trigger.
CREATE TRIGGER posts_touch AFTER UPDATE OF title, body ON posts
BEGIN
  UPDATE posts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
