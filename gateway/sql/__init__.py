"""SQL over the system tables: the Databricks Statement Execution API, grants and dynamic views in SQL."""
