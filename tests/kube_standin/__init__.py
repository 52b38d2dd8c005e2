"""A Kubernetes API stand-in for tests: real HTTP, real `kubernetes` client, pods as Docker
containers. Test-only; product code never imports it."""

from .kubeconfig import CONTEXT
from .standin import StandIn

__all__ = ["CONTEXT", "StandIn"]
