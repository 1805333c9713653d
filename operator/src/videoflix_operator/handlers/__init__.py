"""kopf handlers, one module per watched kind. Thin: every decision lives in `plan`/`reconcile`."""
