"""Transactions: retry_atomic, its options, and the outcome of a lost COMMIT."""
