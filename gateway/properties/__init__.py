"""Run properties: tags under a reserved prefix that nobody may change or delete once set (an audit record)."""
