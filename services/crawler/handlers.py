"""Request and event handlers of the crawler service: none yet beyond the runtime's ping and health."""
