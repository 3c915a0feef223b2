"""certmint: a Kubernetes certificate operator, field-compatible with cert-manager v1."""
