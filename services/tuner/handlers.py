"""Request and event handlers of the tuner service: none yet beyond the runtime's ping and health."""
