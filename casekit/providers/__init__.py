"""Providers: one module per provider; ``base`` holds the interface and the registry."""

from casekit.providers.base import Provider, RetryDecision, provider_class, provider_names

__all__ = ["Provider", "RetryDecision", "provider_class", "provider_names"]
