"""mongodump and mongorestore test doubles (mongo-tools 100.x semantics)."""
