"""Request and event handlers of the image_builder service: none yet beyond the runtime's ping and health."""
