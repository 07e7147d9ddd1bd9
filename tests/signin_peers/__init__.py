"""Real peers for the sign-in tests: registry, token server, OIDC provider, keyring."""
