"""A real Kubernetes control plane for the test suite (see fixtures.py and tools/k8s/build.sh)."""
