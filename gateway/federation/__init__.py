"""Federation: resolve the workspace of a call, forward it to the linked store, record what routing needs."""
