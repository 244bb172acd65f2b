"""The account-wide index: write-through, the sync job, and what reads it."""
