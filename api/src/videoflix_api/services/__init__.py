"""Everything that touches the database or object storage; routes only call into here."""
