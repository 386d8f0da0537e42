"""The tenant domain: provisioning now; monitoring, upgrade and deprovisioning to come."""
