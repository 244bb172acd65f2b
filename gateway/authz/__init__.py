"""Authorization: grants, the policy every request is checked against, visibility and the audit log."""
