"""The audit log: who did what, when, with which outcome; written behind the request, never lost silently."""
