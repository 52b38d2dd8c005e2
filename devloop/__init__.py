"""devloop: a hot-reload dev loop for Kubernetes."""
