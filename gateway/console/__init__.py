"""The account console: the gateway's own pages under `/fedgate/console/...` for people signed in with a browser.

`shell.py` is the frame every console page shares (the router, the sign-in redirect, the layout, the static
files); each feature keeps its own module beside it (dashboards, the SQL editor, alerts, access).
docs/console.md says how a feature plugs in.
"""
