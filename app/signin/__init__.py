"""Sign-in: a Docker account or an organisation's OpenID Connect, secrets in the OS keyring."""
