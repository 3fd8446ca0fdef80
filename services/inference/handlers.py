"""Request and event handlers of the inference service: none yet beyond the runtime's ping and health."""
