"""Vaults: where the values of secret scopes live (OpenBao / HashiCorp Vault, Azure Key Vault)."""
