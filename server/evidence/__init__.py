"""Evidence an operator can check without hamletnet: files, a manifest of their SHA-256 hashes
chained to the previous export's manifest, signed in minisign's format (docs/evidence.md)."""
