"""HTTP handlers of the gateway: thin routes that authenticate, call the bus and shape replies."""
