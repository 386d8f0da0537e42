"""deployment_check_workflow: the gate a new worker build passes before it takes traffic."""
