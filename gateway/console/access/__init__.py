"""Who can see what: principals and groups, a principal's effective permissions with where each comes from,
one-click revoke, and the audit log; for account admins, and for workspace admins within their workspaces."""
