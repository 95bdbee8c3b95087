"""A MongoDB server double for tests: speaks the wire protocol like mongod 7.0 (see README.md)."""
