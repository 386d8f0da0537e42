"""The users domain: onboarding, updates and removal, and switching tenants."""
