"""A test double of the Amazon CloudWatch agent (tests only; see README.md)."""
